"""kiln's C messages name C calls ("cast it with kiln_tensor_cast(t, KILN_F32)"); raised
in Python they name the Python ones (kiln/_messages.py), and .c_message keeps the C
text. Each test triggers a real error and checks both spellings."""
import re

import pytest

import kiln
from kiln import _lib, _messages

C_SPELLING = re.compile(r"\bkiln_[a-z0-9_]+\(|\bKILN_(F32|F64|I64|I32|REDUCTION_[A-Z]+|CPU|CUDA\()")


def raised(exc, f):
    with pytest.raises(exc) as e:
        f()
    msg, c = str(e.value), e.value.c_message
    assert c and msg != c, c
    assert not C_SPELLING.search(msg), msg
    return msg, c


def test_unsupported_dtype_suggests_a_cast():
    msg, c = raised(kiln.DTypeError, lambda: kiln.exp(kiln.tensor([1, 2])))
    assert "kiln_tensor_cast(t, KILN_F32)" in c and "dtype i64" in c
    assert "t.to(kiln.float32)" in msg and "dtype int64" in msg and msg.startswith("exp: input 0")


def test_mixed_dtypes_suggest_a_cast():
    msg, c = raised(kiln.DTypeError, lambda: kiln.ones(2) + kiln.ones(2, dtype="float64"))
    assert "kiln_tensor_cast()" in c
    assert "t.to(dtype)" in msg and "(float32 and float64)" in msg


def test_loss_target_dtype_names_the_receiver():
    msg, c = raised(kiln.DTypeError, lambda: kiln.bce(kiln.full((2,), 0.5), kiln.ones(2, dtype="float64")))
    assert "kiln_tensor_cast(target, KILN_F32)" in c
    assert "target.to(kiln.float32)" in msg
    msg, c = raised(kiln.DTypeError, lambda: kiln.cross_entropy(kiln.ones(4, 3),
                                                                kiln.tensor([0, 1, 2, 0], dtype="int32")))
    assert "target.to(kiln.int64)" in msg and "must be kiln.int64" in msg and "KILN_I64" in c


def test_three_d_input_suggests_unsqueeze():
    msg, c = raised(kiln.ShapeError, lambda: kiln.interpolate(kiln.ones(3, 4, 4), scale_factor=2))
    assert "kiln_unsqueeze(x, 0)" in c
    assert "x.unsqueeze(0)" in msg and "(3-d)" in msg


def test_bce_on_logits_suggests_bce_with_logits():
    msg, c = raised(ValueError, lambda: kiln.bce(kiln.tensor([2.0, -1.0]), kiln.tensor([1.0, 0.0])))
    assert "kiln_bce_with_logits(logits, target, ...)" in c
    assert "kiln.bce_with_logits(logits, target, ...)" in msg and "outside [0,1]" in msg


def test_softmax_over_one_unit_names_python_calls():
    msg, c = raised(kiln.ShapeError, lambda: kiln.softmax(kiln.ones(4, 1), axis=1))
    assert "kiln_sigmoid" in c and "kiln.sigmoid" in msg and "kiln_sigmoid" not in msg
    msg, c = raised(kiln.ShapeError, lambda: kiln.cross_entropy(kiln.ones(4, 1), kiln.tensor([0, 0, 0, 0])))
    assert "kiln_bce_with_logits(logits, target, NULL, NULL, reduction)" in c
    assert "kiln.bce_with_logits(logits, target, reduction=reduction)" in msg


def test_c_function_named_as_the_op_is_the_python_name():
    msg, c = raised(kiln.ShapeError, lambda: kiln.ones(2, 3).item())
    assert c.startswith("kiln_tensor_item:") and msg.startswith("Tensor.item:")


def test_messages_without_c_names_are_kept():
    with pytest.raises(kiln.ShapeError) as e:
        kiln.ones(2, 3).reshape(4, 2)
    assert str(e.value) == e.value.c_message
    assert "cannot reshape [2, 3] (6 elements) to [4, 2]" in str(e.value)


@pytest.mark.skipif(not kiln.cuda.is_available(), reason="needs a CUDA device")
def test_mixed_devices_suggest_to():
    msg, c = raised(kiln.DeviceError, lambda: kiln.ones(2) + kiln.ones(2, device="cuda"))
    assert "kiln_tensor_to()" in c and "t.to(device)" in msg


def test_table_is_built_from_the_bindings():
    t = _messages.table()
    assert set(t) <= set(_lib.declared)  # only C functions the package wraps
    expected = {"kiln_reshape": "kiln.reshape", "kiln_unsqueeze": "kiln.unsqueeze", "kiln_bce": "kiln.bce",
                "kiln_bce_with_logits": "kiln.bce_with_logits", "kiln_tensor_cast": "Tensor.to",
                "kiln_conv2d_create_ex": "kiln.nn.Conv2d", "kiln_relu_create": "kiln.nn.ReLU",
                "kiln_module_zero_grad": "Module.zero_grad", "kiln_optimizer_step": "Optimizer.step",
                "kiln_init_kaiming_uniform": "kiln.nn.init.kaiming_uniform_", "kiln_sum_all": "Tensor.sum",
                "kiln_clip_grad_norm": "kiln.optim.clip_grad_norm_", "kiln_module_add": "Module.add_module"}
    assert {k: t.get(k) for k in expected} == expected
    for c, py in t.items():  # every Python name exists in the package
        obj = kiln if py.startswith("kiln.") else None
        parts = py.split(".")[1:] if obj else py.split(".")
        if obj is None:
            obj = {"Tensor": kiln.Tensor, "Module": kiln.nn.Module, "Optimizer": kiln.optim.Optimizer,
                   "LRScheduler": kiln.optim.LRScheduler, "scope": kiln.scope, "Sequential": kiln.nn.Sequential,
                   "BinaryMetrics": kiln.BinaryMetrics, "ConfusionMatrix": kiln.ConfusionMatrix}[parts[0]]
            parts = parts[1:]
        for p in parts:
            obj = getattr(obj, p)
    assert "kiln_clear_error" not in t and "kiln_scope_free" not in t  # plumbing is never named


def test_translate_constants_and_calls():
    tr = _messages.translate
    assert tr("use KILN_REDUCTION_NONE, _MEAN or _SUM") == 'use reduction="none", "mean" or "sum"'
    assert tr("set KILN_REDUCTION_MEAN") == 'set reduction="mean"'
    assert tr("use KILN_CPU or KILN_CUDA(n)") == 'use "cpu" or "cuda:n"'
    assert tr("pass KILN_SCORES_LOGITS") == "pass from_logits=True"
    assert tr("a KILN_U8 mask, KILN_BF16 storage") == "a kiln.uint8 mask, kiln.bfloat16 storage"
    # environment variables, CMake options and C names the package does not wrap stay
    keep = "set KILN_DEVICE=cpu or KILN_CPU_PAR_MIN, build with -DKILN_CUDA=ON, see kiln_pool2d_params_default(kh, kw)"
    assert tr(keep) == keep
    assert tr("kiln_module_to: not a root; kiln_tensor_detach() first") == "Module.to: not a root; t.detach() first"
    assert tr("see kiln_reshape and kiln_tensor_cast(x, KILN_F64)") == "see kiln.reshape and x.to(kiln.float64)"
