"""One mapping between numpy dtypes and xDSL element types, used by every importer and runtime.

The narrow formats ONNX models carry (bfloat16, float8, float4, int4, int2) map to `ml_dtypes`
arrays, so host ops receive exactly the values their framework expects.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
from xdsl.dialects.builtin import (
    BFloat16Type,
    Float4E2M1FNType,
    Float8E4M3FNType,
    Float8E4M3FNUZType,
    Float8E5M2FNUZType,
    Float8E5M2Type,
    Float8E8M0FNUType,
    Float16Type,
    Float32Type,
    Float64Type,
    IntegerType,
    Signedness,
    f16,
    f32,
    f64,
    i1,
    i8,
    i16,
    i32,
    i64,
)
from xdsl.ir import Attribute

from anec.errors import AnecError

_TO_XDSL: dict[np.dtype, Attribute] = {
    np.dtype(np.float16): f16,
    np.dtype(np.float32): f32,
    np.dtype(np.float64): f64,
    np.dtype(np.bool_): i1,
    np.dtype(np.int8): i8,
    np.dtype(np.int16): i16,
    np.dtype(np.int32): i32,
    np.dtype(np.int64): i64,
    np.dtype(np.uint8): IntegerType(8, Signedness.UNSIGNED),
    np.dtype(np.uint16): IntegerType(16, Signedness.UNSIGNED),
    np.dtype(np.uint32): IntegerType(32, Signedness.UNSIGNED),
    np.dtype(np.uint64): IntegerType(64, Signedness.UNSIGNED),
    np.dtype(ml_dtypes.bfloat16): BFloat16Type(),
    np.dtype(ml_dtypes.float8_e4m3fn): Float8E4M3FNType(),
    np.dtype(ml_dtypes.float8_e4m3fnuz): Float8E4M3FNUZType(),
    np.dtype(ml_dtypes.float8_e5m2): Float8E5M2Type(),
    np.dtype(ml_dtypes.float8_e5m2fnuz): Float8E5M2FNUZType(),
    np.dtype(ml_dtypes.float8_e8m0fnu): Float8E8M0FNUType(),
    np.dtype(ml_dtypes.float4_e2m1fn): Float4E2M1FNType(),
    np.dtype(ml_dtypes.int4): IntegerType(4),
    np.dtype(ml_dtypes.uint4): IntegerType(4, Signedness.UNSIGNED),
    np.dtype(ml_dtypes.int2): IntegerType(2),
    np.dtype(ml_dtypes.uint2): IntegerType(2, Signedness.UNSIGNED),
}
_TO_NUMPY: dict[Attribute, np.dtype] = {t: d for d, t in _TO_XDSL.items()}


def xdsl_element_type(dtype: np.dtype | type) -> Attribute:
    """The xDSL element type for a numpy dtype."""
    dtype = np.dtype(dtype)
    try:
        return _TO_XDSL[dtype]
    except KeyError:
        raise AnecError(f"element type {dtype} is not supported", hint="use float16/32/64, bool or (u)int8-64 tensors") from None


def numpy_dtype(element_type: Attribute) -> np.dtype:
    """The numpy dtype for an xDSL element type."""
    if element_type in _TO_NUMPY:
        return _TO_NUMPY[element_type]
    match element_type:
        case Float16Type():
            return np.dtype(np.float16)
        case Float32Type():
            return np.dtype(np.float32)
        case Float64Type():
            return np.dtype(np.float64)
        case IntegerType() if element_type.width.data == 1:
            return np.dtype(np.bool_)
        case IntegerType():
            unsigned = element_type.signedness.data == Signedness.UNSIGNED
            return np.dtype(f"{'u' if unsigned else ''}int{element_type.width.data}")
    raise AnecError(f"element type {element_type} has no numpy equivalent")
