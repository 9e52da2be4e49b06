"""Step 3 of the book, data preparation: schemas, validation, loaders, the simulated platform,
labels and temporal splits."""
