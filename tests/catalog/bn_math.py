"""Wrong implementations of the bn_math exercises that real students write."""

from tests.catalog import WrongImplementation as W

_FORWARD = '''
def batchnorm_forward(x, gamma, beta, eps=1e-5):
    {body}
    cache = (x_hat, 1.0 / np.sqrt(x.var(axis=0) + eps), gamma)
    return out, cache
'''


def _forward(body: str) -> str:
    return _FORWARD.format(body=body.strip().replace("\n", "\n    "))


_BACKWARD = '''
def batchnorm_backward(dout, cache):
    x_hat, inv_std, gamma = cache
    n = dout.shape[0]
    {body}
    return dx, dgamma, dbeta
'''


def _backward(body: str) -> str:
    return _BACKWARD.format(body=body.strip().replace("\n", "\n    "))


WRONG = [
    W("unbiased-variance", "batchnorm_forward", _forward("""
x_hat = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0, ddof=1) + eps)
out = gamma * x_hat + beta
""")),
    W("eps-outside-sqrt", "batchnorm_forward", _forward("""
x_hat = (x - x.mean(axis=0)) / (np.sqrt(x.var(axis=0)) + eps)
out = gamma * x_hat + beta
""")),
    W("statistics-over-features", "batchnorm_forward", _forward("""
x_hat = (x - x.mean(axis=1, keepdims=True)) / np.sqrt(x.var(axis=1, keepdims=True) + eps)
out = gamma * x_hat + beta
""")),
    W("gamma-beta-swapped", "batchnorm_forward", _forward("""
x_hat = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + eps)
out = beta * x_hat + gamma
""")),
    W("eps-ignored", "batchnorm_forward", _forward("""
x_hat = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + 1e-5)
out = gamma * x_hat + beta
""")),
    W("variance-around-zero", "batchnorm_forward", _forward("""
x_hat = (x - x.mean(axis=0)) / np.sqrt((x ** 2).mean(axis=0) + eps)
out = gamma * x_hat + beta
""")),
    W("modifies-input-in-place", "batchnorm_forward", _forward("""
x -= x.mean(axis=0)
x_hat = x / np.sqrt(x.var(axis=0) + eps)
out = gamma * x_hat + beta
""")),
    W("returns-only-out", "batchnorm_forward", '''
def batchnorm_forward(x, gamma, beta, eps=1e-5):
    x_hat = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + eps)
    return gamma * x_hat + beta
''',
      couples=(("test_batchnorm_backward", "the backward gets no cache to work from"),)),
    W("no-gradient-through-statistics", "batchnorm_backward", _backward("""
dbeta = dout.sum(axis=0)
dgamma = (dout * x_hat).sum(axis=0)
dx = dout * gamma * inv_std
""")),
    W("dgamma-without-xhat", "batchnorm_backward", _backward("""
dbeta = dout.sum(axis=0)
dgamma = dout.sum(axis=0)
g = dout * gamma
dx = inv_std * (g - g.mean(axis=0) - x_hat * (g * x_hat).mean(axis=0))
""")),
    W("n-minus-one-in-backward", "batchnorm_backward", _backward("""
dbeta = dout.sum(axis=0)
dgamma = (dout * x_hat).sum(axis=0)
g = dout * gamma
dx = inv_std * (g - g.sum(axis=0) / (n - 1) - x_hat * (g * x_hat).sum(axis=0) / (n - 1))
""")),
    W("gamma-missing-from-dx", "batchnorm_backward", _backward("""
dbeta = dout.sum(axis=0)
dgamma = (dout * x_hat).sum(axis=0)
dx = inv_std * (dout - dout.mean(axis=0) - x_hat * (dout * x_hat).mean(axis=0))
""")),
    W("spatial-reshape-without-transpose", "spatial_batchnorm_forward", '''
def spatial_batchnorm_forward(x, gamma, beta, eps=1e-5):
    n, c, h, w = x.shape
    out, cache = batchnorm_forward(x.reshape(-1, c), gamma, beta, eps)
    return out.reshape(n, c, h, w), cache
''',
      couples=(("test_spatial_batchnorm_backward", "its cache holds channels mixed up, which a right backward reads"),)),
    W("spatial-per-pixel-statistics", "spatial_batchnorm_forward", '''
def spatial_batchnorm_forward(x, gamma, beta, eps=1e-5):
    n, c, h, w = x.shape
    out, cache = batchnorm_forward(x.reshape(n, -1), np.repeat(gamma, h * w), np.repeat(beta, h * w), eps)
    return out.reshape(n, c, h, w), cache
''',
      couples=(("test_spatial_batchnorm_backward", "its cache holds per-pixel statistics, which a right backward reads"),)),
    W("spatial-wrong-axes-back", "spatial_batchnorm_forward", '''
def spatial_batchnorm_forward(x, gamma, beta, eps=1e-5):
    n, c, h, w = x.shape
    out, cache = batchnorm_forward(x.transpose(0, 2, 3, 1).reshape(-1, c), gamma, beta, eps)
    return out.reshape(n, c, h, w), cache
'''),
    W("spatial-backward-wrong-axes-back", "spatial_batchnorm_backward", '''
def spatial_batchnorm_backward(dout, cache):
    n, c, h, w = dout.shape
    dx, dgamma, dbeta = batchnorm_backward(dout.transpose(0, 2, 3, 1).reshape(-1, c), cache)
    return dx.reshape(n, c, h, w), dgamma, dbeta
'''),
    W("uses-torch-autograd", "batchnorm_backward", '''
def batchnorm_backward(dout, cache):
    import torch
    x_hat, inv_std, gamma = cache
    x = torch.tensor(x_hat, requires_grad=True)
    g = torch.tensor(gamma, requires_grad=True)
    b = torch.zeros_like(g, requires_grad=True)
    out = torch.nn.functional.batch_norm(x, None, None, g, b, training=True)
    dx, dgamma, dbeta = torch.autograd.grad(out, (x, g, b), torch.tensor(dout))
    return dx.numpy() * inv_std * np.sqrt(x_hat.var(axis=0) + 1e-5), dgamma.numpy(), dbeta.numpy()
''',
      couples=(("test_spatial_batchnorm_backward", "the spatial backward calls it, and a function built on a library call earns no credit"),)),
]
