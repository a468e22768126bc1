"""Peak memory of one `pvae.evaluate.log_likelihood` call on 100 series x 150 steps with a
128-unit SequenceVAE (initial-state decoder), in a fresh process: the rise of peak RSS.

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/seq_eval_memory.py 69 [max_working]

(without max_working: the default budget; on code without it, pass only K.)
"""

import resource
import sys
import time

import torch

import pvae

torch.set_num_threads(1)
torch.manual_seed(0)
model = pvae.SequenceVAE(x_dim=1, z_dim=8, hidden_dim=128)
x, lengths = torch.randn(100, 150, 1), torch.full((100,), 150)
kw = {"max_working": int(sys.argv[2])} if len(sys.argv) > 2 else {}
pvae.evaluate.log_likelihood(model, (x[:2], lengths[:2]), num_samples=2)  # warm up
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.time()
ll = pvae.evaluate.log_likelihood(model, (x, lengths), num_samples=int(sys.argv[1]), **kw)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(f"K={sys.argv[1]} {kw}: peak RSS rise {(after - before) / 1024:.0f} MB, "
      f"{time.time() - t:.1f} s, mean log p(x) {ll.mean():.3f}")
