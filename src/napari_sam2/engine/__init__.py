"""The compute engine (torch, no GUI): image and video prediction on a loaded
model, with the frame reader, prompts, memory bank and precision handling."""
