"""Small file-system helpers every concern shares: atomic writes, full-disk detection, where ftui's files live, process ids."""
