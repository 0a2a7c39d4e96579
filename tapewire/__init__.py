"""tapewire's small shared library: what two or more services use.

The generated protobuf code lives in :mod:`tapewire.v1`.
"""
