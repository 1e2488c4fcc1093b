"""The wire: value classes, names, channels and limits shared by every room. No AWS I/O."""
