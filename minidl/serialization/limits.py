"""The bounds ``minidl.load`` enforces, in one place: what a file may cost to read.

Every allocation while loading is bounded by the file's size: the pickle's memo and strings
by the pickle (``pickle_scan``), zip members by the bytes they occupy (``zip_archive``), tensor
bytes by their storage and the file (``torch_pickle``), safetensors spans by the buffer. Three
numbers remain, for what the file's size alone cannot bound:
"""
MAX_DEPTH = 100  # nesting of containers in a checkpoint (a state_dict nests 1-3 levels, a training checkpoint ~5)
MAX_EXPANSION = 100  # compressed .npz members may unpack to this many times the file's size: np.savez_compressed
#                      of trained weights unpacks ~1.1x, a deflate bomb ~1000x
MIN_BUDGET = 64 << 20  # ... and small files to at least this many bytes (all-zero arrays compress ~1000x)
