"""Engine room: errors, model resolution, configuration, readers, chunkers, tokenizers."""
