"""The pure core of a sync: tree diff, Merkle walk planning, sync planning. No I/O."""
