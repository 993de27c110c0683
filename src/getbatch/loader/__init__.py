"""Client side of epoch plans: `tarstream` parses GetBatch answers as they arrive, `fetch`
asks for one batch and resumes a broken stream, `plans` registers and describes plans.
getbatch.torch builds its DataLoader datasets on these."""
