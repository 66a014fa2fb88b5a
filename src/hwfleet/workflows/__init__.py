"""Task graphs, scheduler and SKUs (DESIGN §11, seed 003's task-graph-runner)."""
