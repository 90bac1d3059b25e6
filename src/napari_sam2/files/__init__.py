"""Files on disk (numpy and tifffile; no torch, no GUI): prompt files, label
TIFFs, stacks of frames, session files and exports."""
