"""Files are the only doors between commands: checkpoints, forget sets, masks, results."""
