"""Tolerances for comparing across load paths (bit-equality stays for one code path in one
process).

A pipeline saved and re-read through ``from_pretrained`` holds the same weights as one built in
memory, but in other tensor layouts, so PyTorch may pick other CPU kernels for it; those round
differently per instruction set (differences up to 4.3e-7 were seen on an AMD EPYC with AVX2,
none on AVX-512 machines). Outputs of the tiny models are a few tenths at most, so 1e-5 is far
above rounding and far below any real difference (a wrong weight changes the clip entirely).
"""

LOAD_PATH_ATOL = 1e-5
"""Absolute tolerance (full scale = 1.0) between one model loaded two ways."""
