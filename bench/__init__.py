"""`make bench`: tapewire measured on this machine, side by side with its peers (see README.md)."""
