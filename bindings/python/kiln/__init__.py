"""kiln from Python: tensors, autograd and ops over libkiln.so, with NumPy and
PyTorch interop (copies through .numpy()/kiln.tensor, zero-copy through DLPack).

Each C area is one module here, declaring its C prototypes with kiln._runtime.declare
and wrapping results with kiln._runtime.call (the runtime: library, errors, struct
checks, tensor handles; the Tensor class is kiln/tensor.py): layers (conv2d, pooling, interpolate),
nn (functional linear/batch_norm/dropout, init, Module and the built-in modules),
losses, metrics, optim (optimizers, schedules, clipping), checkpoint (safetensors
and training checkpoints), image (PNG and JPEG files), and examples (the scene generator of the C examples).
"""
from . import _lib
from ._errors import (AnomalyError, BackendError, DeviceError, DTypeError, FormatError, InvalidArgumentError,
                      KilnError, KilnIOError, KilnNotImplementedError, NoDeviceError, OutOfMemoryError,
                      ShapeError, StateError)
from ._types import (bfloat16, default_device, device, dtype, float16, float32, float64, int32, int64, uint8)
from .tensor import (Tensor, arange, empty, empty_like, from_numpy, full, full_like, get_rng_state, is_anomaly_enabled,
                     is_grad_enabled, manual_seed, no_grad, ones, ones_like, rand, rand_like, randn, randn_like,
                     scope, set_anomaly_enabled, set_rng_state, tensor, zeros, zeros_like)
from .ops import *  # noqa: F401,F403 (the names in kiln.ops.__all__)
from ._dlpack import from_dlpack, to_dlpack
from .memory import (empty_cache, memory_stats, reset_peak_memory_stats, set_memory_limit)
from . import cuda
from .layers import avg_pool2d, conv2d, conv_transpose2d, interpolate, max_pool2d, upsample
from . import nn
from .nn import batch_norm, dropout, linear
from .losses import (bce, bce_with_logits, binary_cross_entropy, binary_cross_entropy_with_logits, cross_entropy,
                     dice_loss, dice_loss_multiclass, l1_loss, mse_loss, nll_loss, sigmoid_focal_loss)
from . import losses, metrics, optim, checkpoint
from .metrics import BinaryMetrics, ConfusionMatrix
from .checkpoint import load_checkpoint, load_file, save_checkpoint, save_file
from .image import image_read, image_read_size, image_write
from . import examples  # loads libkiln_examples.so on first use only

float_ = float32
double = float64
half = float16
long = int64

__version__ = "0.1.0"
library_path = _lib.path
