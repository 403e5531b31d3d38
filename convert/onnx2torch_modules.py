"""The torch modules behind fwconv's onnx2torch converters (ONNX GRU/LSTM, Loop, GlobalMaxPool).

Imported only once onnx2torch itself is (it needs torch and onnx2torch's OnnxToTorchModule).
Each implements the ONNX operator's exact semantics with plain torch ops, so it traces to
TorchScript.
"""

from __future__ import annotations

import torch
from onnx2torch.utils.common import OnnxToTorchModule
from torch import nn


class OnnxRNN(nn.Module, OnnxToTorchModule):
    """ONNX GRU/LSTM (forward, reverse, bidirectional), unrolled over a static sequence."""

    def __init__(self, kind, W, R, B, hidden, direction, linear_before_reset, layout, clip, wanted):
        super().__init__()
        self.wanted = wanted  # which of (Y, Y_h[, Y_c]) the graph uses: unused ONNX outputs are ''

        self.kind, self.hidden, self.direction = kind, hidden, direction
        self.linear_before_reset, self.layout, self.clip = linear_before_reset, layout, clip
        self.W, self.R = nn.Parameter(W, requires_grad=False), nn.Parameter(R, requires_grad=False)
        gates = 3 if kind == "GRU" else 4
        B = B if B is not None else torch.zeros(W.shape[0], 2 * gates * hidden, dtype=W.dtype)
        self.B = nn.Parameter(B, requires_grad=False)

    def _act(self, x):
        return x.clamp(-self.clip, self.clip) if self.clip else x

    def _gru(self, x, h, d):
        wz, wr, wh = self.W[d].chunk(3)
        rz, rr, rh = self.R[d].chunk(3)
        wbz, wbr, wbh, rbz, rbr, rbh = self.B[d].chunk(6)
        z = torch.sigmoid(self._act(x @ wz.T + h @ rz.T + wbz + rbz))
        r = torch.sigmoid(self._act(x @ wr.T + h @ rr.T + wbr + rbr))
        if self.linear_before_reset:
            ht = torch.tanh(self._act(x @ wh.T + wbh + r * (h @ rh.T + rbh)))
        else:
            ht = torch.tanh(self._act(x @ wh.T + (r * h) @ rh.T + rbh + wbh))
        return (1 - z) * ht + z * h, None

    def _lstm(self, x, h, c, d):
        wi, wo, wf, wc = self.W[d].chunk(4)
        ri, ro, rf, rc = self.R[d].chunk(4)
        wbi, wbo, wbf, wbc, rbi, rbo, rbf, rbc = self.B[d].chunk(8)
        i = torch.sigmoid(self._act(x @ wi.T + h @ ri.T + wbi + rbi))
        f = torch.sigmoid(self._act(x @ wf.T + h @ rf.T + wbf + rbf))
        g = torch.tanh(self._act(x @ wc.T + h @ rc.T + wbc + rbc))
        c = f * c + i * g
        o = torch.sigmoid(self._act(x @ wo.T + h @ ro.T + wbo + rbo))
        return o * torch.tanh(c), c

    def forward(self, x, initial_h=None, initial_c=None):
        if self.layout == 1:
            x = x.transpose(0, 1)  # -> [seq, batch, input]
        seq, batch = x.shape[0], x.shape[1]
        dirs = self.W.shape[0]
        ys, hs, cs = [], [], []
        for d in range(dirs):
            h = initial_h[d] if initial_h is not None else x.new_zeros(batch, self.hidden)
            c = initial_c[d] if initial_c is not None else x.new_zeros(batch, self.hidden)
            backward = self.direction == "reverse" or d == 1
            steps = range(seq - 1, -1, -1) if backward else range(seq)
            out = [None] * seq
            for t in steps:
                if self.kind == "GRU":
                    h, _ = self._gru(x[t], h, d)
                else:
                    h, c = self._lstm(x[t], h, c, d)
                out[t] = h
            ys.append(torch.stack(out))
            hs.append(h)
            cs.append(c)
        y, y_h, y_c = torch.stack(ys, dim=1), torch.stack(hs), torch.stack(cs)  # [seq, dirs, batch, hidden]
        if self.layout == 1:
            y, y_h, y_c = y.permute(2, 0, 1, 3), y_h.transpose(0, 1), y_c.transpose(0, 1)
        outs = [o for o, w in zip((y, y_h, y_c), self.wanted) if w]
        return outs[0] if len(outs) == 1 else tuple(outs)


class OnnxLoop(nn.Module, OnnxToTorchModule):
    def __init__(self, body, has_trip: bool, has_cond: bool, n_carried: int, n_scan: int):
        super().__init__()
        self.body, self.has_trip, self.has_cond = body, has_trip, has_cond
        self.n_carried, self.n_scan = n_carried, n_scan

    def forward(self, *args):
        args = list(args)
        trip = int(args.pop(0)) if self.has_trip else None
        cond = args.pop(0) if self.has_cond else torch.tensor(True)
        carried, outer = args[: self.n_carried], args[self.n_carried:]
        scans = [[] for _ in range(self.n_scan)]
        i = 0
        while (trip is None or i < trip) and bool(cond):
            outs = self.body(torch.tensor(i, dtype=torch.int64), cond, *carried, *outer)
            outs = outs if isinstance(outs, (tuple, list)) else (outs,)
            cond, carried = outs[0], list(outs[1: 1 + self.n_carried])
            for k in range(self.n_scan):
                scans[k].append(outs[1 + self.n_carried + k])
            i += 1
        results = carried + [torch.stack(s) if s else torch.empty(0) for s in scans]
        return results[0] if len(results) == 1 else tuple(results)


class OnnxGlobalMaxPool(nn.Module, OnnxToTorchModule):
    def forward(self, x):
        return x.amax(dim=tuple(range(2, x.dim())), keepdim=True)
