"""Data: readers for RGBNT201 / RGBNT100 / MSVR310 (official sec. 3.1), the synthetic benchmark, the PK sampler
(sec. 3.2), transforms (sec. 3.3) and the loaders the training engine uses."""
