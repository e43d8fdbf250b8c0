"""The own-model ResNet fixture (train/tests/fixtures/make_fixtures.py) trained from
PyTorch's initialisation with BatchNorm frozen (`eval`: what tether trains after the
importer folds it) or in train mode (`train`): 4 epochs of 2,000 MNIST images, Adam 1e-3,
batch 128, test accuracy on 1,000 test images after each epoch. Not CI; from the
repository root, with MNIST fetched:

    /tmp/venv/bin/python scripts/probe-batchnorm-modes.py eval|train
"""

import sys, numpy as np, torch, torch.nn.functional as F
sys.path.insert(0, 'train/tests/fixtures')
import importlib.util
spec = importlib.util.spec_from_file_location("mf", "train/tests/fixtures/make_fixtures.py"); mf = importlib.util.module_from_spec(spec); spec.loader.exec_module(mf)
def idx(p):
    b = open(p,'rb').read(); nd = b[3]; dims = [int.from_bytes(b[4+4*i:8+4*i],'big') for i in range(nd)]
    return np.frombuffer(b, np.uint8, offset=4+4*nd).reshape(dims)
X = idx('data-cache/mnist/train-images-idx3-ubyte')[:2000].astype(np.float32)/255.; Y = idx('data-cache/mnist/train-labels-idx1-ubyte')[:2000].astype(np.int64)
Xt = idx('data-cache/mnist/t10k-images-idx3-ubyte')[:1000].astype(np.float32)/255.; Yt = idx('data-cache/mnist/t10k-labels-idx1-ubyte')[:1000].astype(np.int64)
m, s = X.mean(), X.std(); X = (X-m)/s; Xt = (Xt-m)/s
torch.manual_seed(0)
model = mf.MnistResnet(); mf.randomise_bn(model)
mode = sys.argv[1]
if mode == 'eval': model.eval()
else: model.train()
opt = torch.optim.Adam(model.parameters(), 1e-3)
X = torch.tensor(X).unsqueeze(1); Y = torch.tensor(Y); Xt = torch.tensor(Xt).unsqueeze(1)
for ep in range(4):
    perm = torch.randperm(2000)
    for i in range(0, 2000 - 127, 128):
        idx_ = perm[i:i+128]
        loss = F.cross_entropy(model(X[idx_]), Y[idx_]); opt.zero_grad(); loss.backward(); opt.step()
    model.eval() if mode=='eval' else None
    with torch.no_grad(): acc = (model(Xt).argmax(1).numpy() == Yt).mean()
    if mode != 'eval': model.train()
    print(mode, ep+1, float(loss), acc)
