"""A PyTorch 2.x twin for test/numerics/torchscript.test.ts: writes a TorchScript
module with attention (nn.MultiheadAttention, which 2.x runs through
scaled_dot_product_attention) traced in float64 to the path given, and prints
as JSON its batch, a direction v, the loss and H v by double backward with the
fused attention kernels off (math attention), the parameter names, and
whether PyTorch's own double backward fails with its defaults ("fused": the
error, or null).

usage: python attention_twin.py OUT.pt
"""
import json, sys, torch, torch.nn as nn, torch.nn.functional as F
torch.manual_seed(0)
torch.set_default_dtype(torch.float64)
class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.LayerNorm(8)
        self.attention = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 3)
    def forward(self, x):
        h = self.norm(x)
        x = x + self.attention(h, h, h, need_weights=False)[0]
        return self.head(x.mean(1))
m = Block().train()
x = torch.randn(5, 4, 8)
y = torch.tensor([0, 1, 2, 1, 0])
traced = torch.jit.trace(m, x)
traced.save(sys.argv[1])
ps = list(traced.parameters())
v = [torch.randn_like(p) for p in ps]
def hvp():
    loss = F.cross_entropy(traced(x), y)
    g = torch.autograd.grad(loss, ps, create_graph=True)
    return loss, torch.autograd.grad(g, ps, grad_outputs=v)
try:
    hvp()
    fused = None
except RuntimeError as e:
    fused = str(e).splitlines()[0]
torch.backends.cuda.enable_flash_sdp(False)
torch.backends.cuda.enable_mem_efficient_sdp(False)
loss, hv = hvp()
flat = lambda ts: torch.cat([t.reshape(-1) for t in ts]).tolist()
print(json.dumps({"torch": torch.__version__, "fused": fused, "x": x.reshape(-1).tolist(), "shape": list(x.shape), "y": y.tolist(),
                  "v": flat(v), "loss": loss.item(), "hv": flat(hv), "names": [n for n, _ in traced.named_parameters()]}))
