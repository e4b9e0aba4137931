"""Everything that runs in RQ workers: GitHub access, tree diff, sync pipeline, queueing."""
