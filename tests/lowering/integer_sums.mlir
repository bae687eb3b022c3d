// RUN: anec opt %s -p ane-legalize | filecheck %s --check-prefix=LEGAL
// RUN: anec opt %s -p ane-legalize,ane-partition,ane-fp16 | filecheck %s

// onnxruntime's quantize_dynamic conv (ddddocr's recogniser): the exact integer sums of a ConvInteger
// (a conv by the int8 weight "w", stored with scale one in integer_sums.weights.npz: 4x4 values from
// -16 to 16), plus the runtime bias floor(b / s) cast to int32 and back, times the runtime scale s.
// ane-legalize drops the int32 round trip (the floor is an integer already) and leaves the float32
// arithmetic in the import's order: the scale still follows the sums.
// LEGAL-LABEL: func.func @sums_then_scale
// LEGAL:         %[[SUMS:.*]] = ane.conv %x, %{{.*}} {ane.name = "conv"
// LEGAL:         %[[FLOOR:.*]] = ane.floor %{{.*}} {ane.name = "bias_floor"} : tensor<1x1x1x4xf32>
// LEGAL-NEXT:    %[[SHIFT:.*]] = ane.reshape %[[FLOOR]] {{.*}} : (tensor<1x1x1x4xf32>) -> tensor<1x4x1x1xf32>
// LEGAL-NEXT:    %[[BIASED:.*]] = ane.add %[[SUMS]], %[[SHIFT]] {ane.name = "bias_add"}
// LEGAL-NEXT:    ane.mul %[[BIASED]], %s {ane.name = "scale"}
// LEGAL-NOT:     ane.cast

// One segment holds it all (no integer tensor is left to split it); ane-fp16 moves the scale in front
// of the sums, which fp16 could not hold (the conv, now of dequantized values, takes a derived name), and
// spells the floor as a rounding and a one-step correction.
// CHECK-LABEL: func.func @sums_then_scale
// CHECK:         ane.segment(%x, %b, %s)
// CHECK-NEXT:    ^{{.*}}(%[[X:.*]]: tensor<1x4x8x8xf32>, %{{.*}}: tensor<1x1x1x4xf32>, %[[S:.*]]: tensor<1x1x1x1xf32>):
// CHECK-DAG:       %[[XH:.*]] = ane.cast %[[X]] {{.*}} -> tensor<1x4x8x8xf16>
// CHECK-DAG:       %[[SH:.*]] = ane.cast %[[S]] {{.*}} -> tensor<1x1x1x1xf16>
// CHECK:           %[[ROUND:.*]] = ane.mul {{.*}} {ane.name = "bias_floor#round"}
// CHECK-NEXT:      %[[PAST:.*]] = ane.greater %[[ROUND]], %{{.*}} {ane.name = "bias_floor#past"}
// CHECK:           %[[STEP:.*]] = ane.sub %[[ROUND]], %{{.*}} {ane.name = "bias_floor#step"}
// CHECK-NEXT:      ane.select %[[PAST]], %[[STEP]], %[[ROUND]] {ane.name = "bias_floor"}
// CHECK:           %[[SCALED:.*]] = ane.mul %[[XH]], %[[SH]] {ane.name = "scale#scale_input"} : (tensor<1x4x8x8xf16>, tensor<1x1x1x1xf16>) -> tensor<1x4x8x8xf16>
// CHECK:           %[[MAC:.*]] = ane.conv %[[SCALED]], %{{.*}} {ane.name = "conv#dequantized", ane.fp16_fixes = ["the scale after these integer sums moved in front of them {{.*}}"]
// CHECK:           %[[SHIFT:.*]] = ane.mul %{{.*}}, %[[SH]] {ane.name = "scale#shift"}
// CHECK-NEXT:      ane.add %[[MAC]], %[[SHIFT]] {ane.name = "scale#sum"}
// CHECK-NOT:     ane.segment
// quantize_dynamic's MatMulInteger: the sums times the runtime input scale times the constant weight
// scale. The runtime scale goes into the input and the constant one into the weight's stored scale (still
// int8 per tensor), so both operands are the dequantized values: the input scaled by both (7.5e-4 per
// unit of a scale near 0.03) would sit among fp16's denormals, which the M1's MAC flushes to zero.
// CHECK-LABEL: func.func @runtime_and_weight_scale
// CHECK:           %[[SH:.*]] = ane.cast %{{.*}} -> tensor<1x1x1x1xf16>
// CHECK-NEXT:      %[[SCALED:.*]] = ane.mul %{{.*}}, %[[SH]] {ane.name = "output_scale#scale_input"}
// CHECK-NEXT:      %[[W:.*]] = ane.const "output_scale_weight" stored "int8" : tensor<4x4x1x1xf16>
// CHECK-NEXT:      ane.conv %[[SCALED]], %[[W]] {ane.name = "matmul_integer#dequantized"
// CHECK-NOT:       ane.mul
// CHECK:         func.return
builtin.module attributes {ane.weights_file = "integer_sums.weights.npz"} {
  func.func @sums_then_scale(%x: tensor<1x4x8x8xf32>, %s: tensor<1x1x1x1xf32>, %b: tensor<1x1x1x4xf32>) -> tensor<1x4x8x8xf32> {
    %w = ane.const "w" stored "int8" : tensor<4x4x1x1xf32>
    %sums = ane.conv %x, %w {ane.name = "conv", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x4x8x8xf32>, tensor<4x4x1x1xf32>) -> tensor<1x4x8x8xf32>
    %bd = ane.div %b, %s {ane.name = "bias_div"} : (tensor<1x1x1x4xf32>, tensor<1x1x1x1xf32>) -> tensor<1x1x1x4xf32>
    %bf = ane.floor %bd {ane.name = "bias_floor"} : tensor<1x1x1x4xf32>
    %bi = ane.cast %bf {ane.name = "bias_int"} : (tensor<1x1x1x4xf32>) -> tensor<1x1x1x4xi32>
    %br = ane.reshape %bi {ane.name = "bias_reshape"} : (tensor<1x1x1x4xi32>) -> tensor<1x4x1x1xi32>
    %bc = ane.cast %br {ane.name = "bias_float"} : (tensor<1x4x1x1xi32>) -> tensor<1x4x1x1xf32>
    %cb = ane.add %sums, %bc {ane.name = "bias_add"} : (tensor<1x4x8x8xf32>, tensor<1x4x1x1xf32>) -> tensor<1x4x8x8xf32>
    %y = ane.mul %cb, %s {ane.name = "scale"} : (tensor<1x4x8x8xf32>, tensor<1x1x1x1xf32>) -> tensor<1x4x8x8xf32>
    func.return %y : tensor<1x4x8x8xf32>
  }
  func.func @runtime_and_weight_scale(%x: tensor<1x4x8x8xf32>, %s: tensor<1x1x1x1xf32>) -> tensor<1x4x8x8xf32> {
    %w = ane.const "w" stored "int8" : tensor<4x4x1x1xf32>
    %sums = ane.conv %x, %w {ane.name = "matmul_integer", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x4x8x8xf32>, tensor<4x4x1x1xf32>) -> tensor<1x4x8x8xf32>
    %ws = ane.const dense<7.5e-04> : tensor<1x1x1x1xf32>
    %both = ane.mul %s, %ws {ane.name = "scale_product"} : (tensor<1x1x1x1xf32>, tensor<1x1x1x1xf32>) -> tensor<1x1x1x1xf32>
    %y = ane.mul %sums, %both {ane.name = "output_scale"} : (tensor<1x4x8x8xf32>, tensor<1x1x1x1xf32>) -> tensor<1x4x8x8xf32>
    func.return %y : tensor<1x4x8x8xf32>
  }
}
