// Round trip of every op in the `ane` dialect: the custom form prints back as written (defaults
// elided), and the generic form parses back to the same custom form. Stock `xdsl-opt` (a real
// subprocess) finds the dialect through anec's `xdsl.universe` entry point.
// RUN: anec opt %s | filecheck %s
// RUN: anec opt %s --print-op-generic | anec opt | filecheck %s
// RUN: xdsl-opt %s | filecheck %s

func.func @consts() -> (tensor<64x3x7x7xf32>, tensor<2xf32>, tensor<2x2xi32>, tensor<3xi1>) {
  %w = ane.const "conv1.weight" : tensor<64x3x7x7xf32>
  %s = ane.const dense<[1.0, 2.5]> : tensor<2xf32>
  %i = ane.const dense<7> : tensor<2x2xi32> {ane.name = "seven"}
  %b = ane.const dense<[true, false, true]> : tensor<3xi1>
  func.return %w, %s, %i, %b : tensor<64x3x7x7xf32>, tensor<2xf32>, tensor<2x2xi32>, tensor<3xi1>
}
// CHECK-LABEL: func.func @consts(
// CHECK-NEXT:  %w = ane.const "conv1.weight" : tensor<64x3x7x7xf32>
// CHECK-NEXT:  %s = ane.const dense<[1.000000e+00, 2.500000e+00]> : tensor<2xf32>
// CHECK-NEXT:  %i = ane.const dense<7> : tensor<2x2xi32> {ane.name = "seven"}
// CHECK-NEXT:  %b = ane.const dense<[true, false, true]> : tensor<3xi1>
// CHECK-NEXT:  func.return %w, %s, %i, %b : tensor<64x3x7x7xf32>, tensor<2xf32>, tensor<2x2xi32>, tensor<3xi1>

func.func @unary(%x: tensor<2x3xf32>, %n: tensor<2x3xi32>) {
  %0 = ane.relu %x : tensor<2x3xf32>
  %1 = ane.sigmoid %x : tensor<2x3xf32>
  %2 = ane.tanh %x : tensor<2x3xf32>
  %3 = ane.gelu %x : tensor<2x3xf32>
  %4 = ane.gelu %x {approximate = "tanh"} : tensor<2x3xf32>
  %5 = ane.silu %x : tensor<2x3xf32>
  %6 = ane.exp %x : tensor<2x3xf32>
  %7 = ane.log %x : tensor<2x3xf32>
  %8 = ane.sqrt %x : tensor<2x3xf32>
  %9 = ane.rsqrt %x : tensor<2x3xf32>
  %10 = ane.reciprocal %x : tensor<2x3xf32>
  %11 = ane.abs %n : tensor<2x3xi32>
  %12 = ane.neg %n : tensor<2x3xi32>
  %13 = ane.leaky_relu %x {alpha = 0.1 : f32} : tensor<2x3xf32>
  %14 = ane.clamp %x {min = -1.0 : f32, max = 6.0 : f32} : tensor<2x3xf32>
  %15 = ane.elu %x {alpha = 1.0 : f32} : tensor<2x3xf32>
  %16 = ane.softplus %x : tensor<2x3xf32>
  %17 = ane.hardswish %x : tensor<2x3xf32>
  %18 = ane.hardsigmoid %x {alpha = 0.2 : f32, beta = 0.5 : f32} : tensor<2x3xf32>
  %19 = ane.erf %x : tensor<2x3xf32>
  %20 = ane.sin %x : tensor<2x3xf32>
  %21 = ane.cos %x : tensor<2x3xf32>
  %22 = ane.softmax %x {axis = 1 : i64} : tensor<2x3xf32>
  %23 = ane.sign %x : tensor<2x3xf32>
  %24 = ane.round %x : tensor<2x3xf32>
  %25 = ane.floor %x : tensor<2x3xf32>
  %26 = ane.ceil %x : tensor<2x3xf32>
  func.return
}
// CHECK-LABEL: func.func @unary(
// CHECK-NEXT:  %0 = ane.relu %x : tensor<2x3xf32>
// CHECK-NEXT:  %1 = ane.sigmoid %x : tensor<2x3xf32>
// CHECK-NEXT:  %2 = ane.tanh %x : tensor<2x3xf32>
// CHECK-NEXT:  %3 = ane.gelu %x : tensor<2x3xf32>
// CHECK-NEXT:  %4 = ane.gelu %x {approximate = "tanh"} : tensor<2x3xf32>
// CHECK-NEXT:  %5 = ane.silu %x : tensor<2x3xf32>
// CHECK-NEXT:  %6 = ane.exp %x : tensor<2x3xf32>
// CHECK-NEXT:  %7 = ane.log %x : tensor<2x3xf32>
// CHECK-NEXT:  %8 = ane.sqrt %x : tensor<2x3xf32>
// CHECK-NEXT:  %9 = ane.rsqrt %x : tensor<2x3xf32>
// CHECK-NEXT:  %10 = ane.reciprocal %x : tensor<2x3xf32>
// CHECK-NEXT:  %11 = ane.abs %n : tensor<2x3xi32>
// CHECK-NEXT:  %12 = ane.neg %n : tensor<2x3xi32>
// CHECK-NEXT:  %13 = ane.leaky_relu %x {alpha = 1.000000e-01 : f32} : tensor<2x3xf32>
// CHECK-NEXT:  %14 = ane.clamp %x {min = -1.000000e+00 : f32, max = 6.000000e+00 : f32} : tensor<2x3xf32>
// CHECK-NEXT:  %15 = ane.elu %x {alpha = 1.000000e+00 : f32} : tensor<2x3xf32>
// CHECK-NEXT:  %16 = ane.softplus %x : tensor<2x3xf32>
// CHECK-NEXT:  %17 = ane.hardswish %x : tensor<2x3xf32>
// CHECK-NEXT:  %18 = ane.hardsigmoid %x {alpha = 2.000000e-01 : f32, beta = 5.000000e-01 : f32} : tensor<2x3xf32>
// CHECK-NEXT:  %19 = ane.erf %x : tensor<2x3xf32>
// CHECK-NEXT:  %20 = ane.sin %x : tensor<2x3xf32>
// CHECK-NEXT:  %21 = ane.cos %x : tensor<2x3xf32>
// CHECK-NEXT:  %22 = ane.softmax %x {axis = 1 : i64} : tensor<2x3xf32>
// CHECK-NEXT:  %23 = ane.sign %x : tensor<2x3xf32>
// CHECK-NEXT:  %24 = ane.round %x : tensor<2x3xf32>
// CHECK-NEXT:  %25 = ane.floor %x : tensor<2x3xf32>
// CHECK-NEXT:  %26 = ane.ceil %x : tensor<2x3xf32>
// CHECK-NEXT:  func.return

func.func @binary(%a: tensor<2x3xf32>, %b: tensor<1x3xf32>, %c: tensor<2x3xi1>, %i: tensor<2x3xi32>) {
  %0 = ane.add %a, %b : (tensor<2x3xf32>, tensor<1x3xf32>) -> tensor<2x3xf32>
  %1 = ane.sub %a, %b : (tensor<2x3xf32>, tensor<1x3xf32>) -> tensor<2x3xf32>
  %2 = ane.mul %a, %b : (tensor<2x3xf32>, tensor<1x3xf32>) -> tensor<2x3xf32>
  %3 = ane.div %i, %i : (tensor<2x3xi32>, tensor<2x3xi32>) -> tensor<2x3xi32>
  %4 = ane.max %a, %b : (tensor<2x3xf32>, tensor<1x3xf32>) -> tensor<2x3xf32>
  %5 = ane.min %a, %b : (tensor<2x3xf32>, tensor<1x3xf32>) -> tensor<2x3xf32>
  %6 = ane.pow %a, %b : (tensor<2x3xf32>, tensor<1x3xf32>) -> tensor<2x3xf32>
  %7 = ane.equal %a, %b : (tensor<2x3xf32>, tensor<1x3xf32>) -> tensor<2x3xi1>
  %8 = ane.not_equal %i, %i : (tensor<2x3xi32>, tensor<2x3xi32>) -> tensor<2x3xi1>
  %9 = ane.greater %a, %b : (tensor<2x3xf32>, tensor<1x3xf32>) -> tensor<2x3xi1>
  %10 = ane.greater_equal %a, %b : (tensor<2x3xf32>, tensor<1x3xf32>) -> tensor<2x3xi1>
  %11 = ane.less %a, %b : (tensor<2x3xf32>, tensor<1x3xf32>) -> tensor<2x3xi1>
  %12 = ane.less_equal %a, %b : (tensor<2x3xf32>, tensor<1x3xf32>) -> tensor<2x3xi1>
  %13 = ane.select %c, %a, %b : (tensor<2x3xi1>, tensor<2x3xf32>, tensor<1x3xf32>) -> tensor<2x3xf32>
  func.return
}
// CHECK-LABEL: func.func @binary(
// CHECK-NEXT:  %0 = ane.add %a, %b : (tensor<2x3xf32>, tensor<1x3xf32>) -> tensor<2x3xf32>
// CHECK-NEXT:  %1 = ane.sub %a, %b : (tensor<2x3xf32>, tensor<1x3xf32>) -> tensor<2x3xf32>
// CHECK-NEXT:  %2 = ane.mul %a, %b : (tensor<2x3xf32>, tensor<1x3xf32>) -> tensor<2x3xf32>
// CHECK-NEXT:  %3 = ane.div %i, %i : (tensor<2x3xi32>, tensor<2x3xi32>) -> tensor<2x3xi32>
// CHECK-NEXT:  %4 = ane.max %a, %b : (tensor<2x3xf32>, tensor<1x3xf32>) -> tensor<2x3xf32>
// CHECK-NEXT:  %5 = ane.min %a, %b : (tensor<2x3xf32>, tensor<1x3xf32>) -> tensor<2x3xf32>
// CHECK-NEXT:  %6 = ane.pow %a, %b : (tensor<2x3xf32>, tensor<1x3xf32>) -> tensor<2x3xf32>
// CHECK-NEXT:  %7 = ane.equal %a, %b : (tensor<2x3xf32>, tensor<1x3xf32>) -> tensor<2x3xi1>
// CHECK-NEXT:  %8 = ane.not_equal %i, %i : (tensor<2x3xi32>, tensor<2x3xi32>) -> tensor<2x3xi1>
// CHECK-NEXT:  %9 = ane.greater %a, %b : (tensor<2x3xf32>, tensor<1x3xf32>) -> tensor<2x3xi1>
// CHECK-NEXT:  %10 = ane.greater_equal %a, %b : (tensor<2x3xf32>, tensor<1x3xf32>) -> tensor<2x3xi1>
// CHECK-NEXT:  %11 = ane.less %a, %b : (tensor<2x3xf32>, tensor<1x3xf32>) -> tensor<2x3xi1>
// CHECK-NEXT:  %12 = ane.less_equal %a, %b : (tensor<2x3xf32>, tensor<1x3xf32>) -> tensor<2x3xi1>
// CHECK-NEXT:  %13 = ane.select %c, %a, %b : (tensor<2x3xi1>, tensor<2x3xf32>, tensor<1x3xf32>) -> tensor<2x3xf32>
// CHECK-NEXT:  func.return

func.func @mac(%x: tensor<1x4x8x8xf32>, %w: tensor<6x2x3x3xf32>, %bias: tensor<6xf32>, %x1: tensor<2x4x10xf32>, %w1: tensor<8x4x3xf32>, %tw: tensor<4x3x2x2xf32>, %tb: tensor<6xf32>) {
  %0 = ane.conv %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 2 : i64} : (tensor<1x4x8x8xf32>, tensor<6x2x3x3xf32>) -> tensor<1x6x8x8xf32>
  %1 = ane.conv %x, %w, %bias {strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 2 : i64, activation = "leaky_relu", activation_params = array<f32: 0.1>} : (tensor<1x4x8x8xf32>, tensor<6x2x3x3xf32>, tensor<6xf32>) -> tensor<1x6x3x3xf32>
  %2 = ane.conv %x1, %w1 {strides = array<i64: 1>, pads = array<i64: 2, 2>, dilations = array<i64: 2>, groups = 1 : i64, activation = "relu"} : (tensor<2x4x10xf32>, tensor<8x4x3xf32>) -> tensor<2x8x10xf32>
  %3 = ane.conv_transpose %x, %tw, %tb {strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 2 : i64, output_padding = array<i64: 1, 1>, activation = "clamp", activation_params = array<f32: 0.0, 6.0>} : (tensor<1x4x8x8xf32>, tensor<4x3x2x2xf32>, tensor<6xf32>) -> tensor<1x6x17x17xf32>
  %4 = ane.conv_transpose %x, %tw {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64, output_padding = array<i64: 0, 0>} : (tensor<1x4x8x8xf32>, tensor<4x3x2x2xf32>) -> tensor<1x3x9x9xf32>
  func.return
}
// CHECK-LABEL: func.func @mac(
// CHECK-NEXT:  %0 = ane.conv %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 2 : i64} : (tensor<1x4x8x8xf32>, tensor<6x2x3x3xf32>) -> tensor<1x6x8x8xf32>
// CHECK-NEXT:  %1 = ane.conv %x, %w, %bias {strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 2 : i64, activation = "leaky_relu", activation_params = array<f32: 1.000000e-01>} : (tensor<1x4x8x8xf32>, tensor<6x2x3x3xf32>, tensor<6xf32>) -> tensor<1x6x3x3xf32>
// CHECK-NEXT:  %2 = ane.conv %x1, %w1 {strides = array<i64: 1>, pads = array<i64: 2, 2>, dilations = array<i64: 2>, groups = 1 : i64, activation = "relu"} : (tensor<2x4x10xf32>, tensor<8x4x3xf32>) -> tensor<2x8x10xf32>
// CHECK-NEXT:  %3 = ane.conv_transpose %x, %tw, %tb {strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 2 : i64, output_padding = array<i64: 1, 1>, activation = "clamp", activation_params = array<f32: 0.000000e+00, 6.000000e+00>} : (tensor<1x4x8x8xf32>, tensor<4x3x2x2xf32>, tensor<6xf32>) -> tensor<1x6x17x17xf32>
// CHECK-NEXT:  %4 = ane.conv_transpose %x, %tw {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64, output_padding = array<i64: 0, 0>} : (tensor<1x4x8x8xf32>, tensor<4x3x2x2xf32>) -> tensor<1x3x9x9xf32>
// CHECK-NEXT:  func.return

func.func @matmul(%a: tensor<2x3x4xf32>, %b: tensor<1x4x5xf32>, %bt: tensor<2x5x4xf32>, %bias: tensor<5xf32>) {
  %0 = ane.matmul %a, %b : (tensor<2x3x4xf32>, tensor<1x4x5xf32>) -> tensor<2x3x5xf32>
  %1 = ane.matmul %a, %bt, %bias {transpose_rhs = true, activation = "gelu"} : (tensor<2x3x4xf32>, tensor<2x5x4xf32>, tensor<5xf32>) -> tensor<2x3x5xf32>
  %2 = ane.matmul %a, %a {transpose_lhs = true} : (tensor<2x3x4xf32>, tensor<2x3x4xf32>) -> tensor<2x4x4xf32>
  func.return
}
// CHECK-LABEL: func.func @matmul(
// CHECK-NEXT:  %0 = ane.matmul %a, %b : (tensor<2x3x4xf32>, tensor<1x4x5xf32>) -> tensor<2x3x5xf32>
// CHECK-NEXT:  %1 = ane.matmul %a, %bt, %bias {transpose_rhs = true, activation = "gelu"} : (tensor<2x3x4xf32>, tensor<2x5x4xf32>, tensor<5xf32>) -> tensor<2x3x5xf32>
// CHECK-NEXT:  %2 = ane.matmul %a, %a {transpose_lhs = true} : (tensor<2x3x4xf32>, tensor<2x3x4xf32>) -> tensor<2x4x4xf32>
// CHECK-NEXT:  func.return

func.func @sdpa(%q: tensor<1x2x5x8xf32>, %k: tensor<1x2x7x8xf32>, %v: tensor<1x2x7x4xf32>, %m: tensor<1x1x5x7xf32>) {
  %0 = ane.sdpa %q, %k, %v {scale = 0.35355339 : f32} : (tensor<1x2x5x8xf32>, tensor<1x2x7x8xf32>, tensor<1x2x7x4xf32>) -> tensor<1x2x5x4xf32>
  %1 = ane.sdpa %q, %k, %v, %m {scale = 1.0 : f32} : (tensor<1x2x5x8xf32>, tensor<1x2x7x8xf32>, tensor<1x2x7x4xf32>, tensor<1x1x5x7xf32>) -> tensor<1x2x5x4xf32>
  func.return
}
// CHECK-LABEL: func.func @sdpa(
// CHECK-NEXT:  %0 = ane.sdpa %q, %k, %v {scale = 0.353553385 : f32} : (tensor<1x2x5x8xf32>, tensor<1x2x7x8xf32>, tensor<1x2x7x4xf32>) -> tensor<1x2x5x4xf32>
// CHECK-NEXT:  %1 = ane.sdpa %q, %k, %v, %m {scale = 1.000000e+00 : f32} : (tensor<1x2x5x8xf32>, tensor<1x2x7x8xf32>, tensor<1x2x7x4xf32>, tensor<1x1x5x7xf32>) -> tensor<1x2x5x4xf32>
// CHECK-NEXT:  func.return

func.func @reduce(%x: tensor<2x3x4xf32>) {
  %0 = ane.reduce_sum %x {axes = array<i64: 1>} : (tensor<2x3x4xf32>) -> tensor<2x1x4xf32>
  %1 = ane.reduce_mean %x {axes = array<i64: 1, 2>, keepdims = false} : (tensor<2x3x4xf32>) -> tensor<2xf32>
  %2 = ane.reduce_max %x {axes = array<i64: 0>} : (tensor<2x3x4xf32>) -> tensor<1x3x4xf32>
  %3 = ane.reduce_min %x {axes = array<i64: 2>, keepdims = false} : (tensor<2x3x4xf32>) -> tensor<2x3xf32>
  %4 = ane.reduce_l2 %x {axes = array<i64: 0, 1, 2>} : (tensor<2x3x4xf32>) -> tensor<1x1x1xf32>
  %5 = ane.reduce_logsumexp %x {axes = array<i64: 2>} : (tensor<2x3x4xf32>) -> tensor<2x3x1xf32>
  %6 = ane.argmax %x {axis = 2 : i64} : (tensor<2x3x4xf32>) -> tensor<2x3x1xi32>
  %7 = ane.argmin %x {axis = 1 : i64, keepdims = false, select_last_index = true} : (tensor<2x3x4xf32>) -> tensor<2x4xi64>
  %8, %9 = ane.topk %x {k = 2 : i64, axis = 2 : i64} : (tensor<2x3x4xf32>) -> (tensor<2x3x2xf32>, tensor<2x3x2xi32>)
  %10, %11 = ane.topk %x {k = 3 : i64, axis = 1 : i64, largest = false, sorted = false} : (tensor<2x3x4xf32>) -> (tensor<2x3x4xf32>, tensor<2x3x4xi64>)
  func.return
}
// CHECK-LABEL: func.func @reduce(
// CHECK-NEXT:  %0 = ane.reduce_sum %x {axes = array<i64: 1>} : (tensor<2x3x4xf32>) -> tensor<2x1x4xf32>
// CHECK-NEXT:  %1 = ane.reduce_mean %x {axes = array<i64: 1, 2>, keepdims = false} : (tensor<2x3x4xf32>) -> tensor<2xf32>
// CHECK-NEXT:  %2 = ane.reduce_max %x {axes = array<i64: 0>} : (tensor<2x3x4xf32>) -> tensor<1x3x4xf32>
// CHECK-NEXT:  %3 = ane.reduce_min %x {axes = array<i64: 2>, keepdims = false} : (tensor<2x3x4xf32>) -> tensor<2x3xf32>
// CHECK-NEXT:  %4 = ane.reduce_l2 %x {axes = array<i64: 0, 1, 2>} : (tensor<2x3x4xf32>) -> tensor<1x1x1xf32>
// CHECK-NEXT:  %5 = ane.reduce_logsumexp %x {axes = array<i64: 2>} : (tensor<2x3x4xf32>) -> tensor<2x3x1xf32>
// CHECK-NEXT:  %6 = ane.argmax %x {axis = 2 : i64} : (tensor<2x3x4xf32>) -> tensor<2x3x1xi32>
// CHECK-NEXT:  %7 = ane.argmin %x {axis = 1 : i64, keepdims = false, select_last_index = true} : (tensor<2x3x4xf32>) -> tensor<2x4xi64>
// CHECK-NEXT:  %8, %9 = ane.topk %x {k = 2 : i64, axis = 2 : i64} : (tensor<2x3x4xf32>) -> (tensor<2x3x2xf32>, tensor<2x3x2xi32>)
// CHECK-NEXT:  %10, %11 = ane.topk %x {k = 3 : i64, axis = 1 : i64, largest = false, sorted = false} : (tensor<2x3x4xf32>) -> (tensor<2x3x4xf32>, tensor<2x3x4xi64>)
// CHECK-NEXT:  func.return

func.func @pool(%x: tensor<1x3x8x8xf32>, %y: tensor<1x3x9xf32>) {
  %0 = ane.max_pool %x {kernel = array<i64: 3, 3>, strides = array<i64: 2, 2>, pads = array<i64: 1, 1, 1, 1>} : (tensor<1x3x8x8xf32>) -> tensor<1x3x4x4xf32>
  %1 = ane.avg_pool %x {kernel = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>} : (tensor<1x3x8x8xf32>) -> tensor<1x3x4x4xf32>
  %2 = ane.avg_pool %y {kernel = array<i64: 3>, strides = array<i64: 1>, pads = array<i64: 1, 1>, count_include_pad = true} : (tensor<1x3x9xf32>) -> tensor<1x3x9xf32>
  %3 = ane.l2_pool %x {kernel = array<i64: 2, 2>, strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>} : (tensor<1x3x8x8xf32>) -> tensor<1x3x7x7xf32>
  %4 = ane.global_avg_pool %x : (tensor<1x3x8x8xf32>) -> tensor<1x3x1x1xf32>
  %5 = ane.global_max_pool %y : (tensor<1x3x9xf32>) -> tensor<1x3x1xf32>
  func.return
}
// CHECK-LABEL: func.func @pool(
// CHECK-NEXT:  %0 = ane.max_pool %x {kernel = array<i64: 3, 3>, strides = array<i64: 2, 2>, pads = array<i64: 1, 1, 1, 1>} : (tensor<1x3x8x8xf32>) -> tensor<1x3x4x4xf32>
// CHECK-NEXT:  %1 = ane.avg_pool %x {kernel = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>} : (tensor<1x3x8x8xf32>) -> tensor<1x3x4x4xf32>
// CHECK-NEXT:  %2 = ane.avg_pool %y {kernel = array<i64: 3>, strides = array<i64: 1>, pads = array<i64: 1, 1>, count_include_pad = true} : (tensor<1x3x9xf32>) -> tensor<1x3x9xf32>
// CHECK-NEXT:  %3 = ane.l2_pool %x {kernel = array<i64: 2, 2>, strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>} : (tensor<1x3x8x8xf32>) -> tensor<1x3x7x7xf32>
// CHECK-NEXT:  %4 = ane.global_avg_pool %x : (tensor<1x3x8x8xf32>) -> tensor<1x3x1x1xf32>
// CHECK-NEXT:  %5 = ane.global_max_pool %y : (tensor<1x3x9xf32>) -> tensor<1x3x1xf32>
// CHECK-NEXT:  func.return

func.func @norm(%x: tensor<2x4x3x3xf32>, %c: tensor<4xf32>, %s: tensor<2x5xf32>, %g: tensor<5xf32>) {
  %0 = ane.layer_norm %s, %g, %g {axes = array<i64: 1>, epsilon = 1.0e-05 : f32} : (tensor<2x5xf32>, tensor<5xf32>, tensor<5xf32>) -> tensor<2x5xf32>
  %1 = ane.instance_norm %x, %c, %c {epsilon = 1.0e-05 : f32} : (tensor<2x4x3x3xf32>, tensor<4xf32>, tensor<4xf32>) -> tensor<2x4x3x3xf32>
  %2 = ane.group_norm %x, %c, %c {num_groups = 2 : i64, epsilon = 1.0e-05 : f32} : (tensor<2x4x3x3xf32>, tensor<4xf32>, tensor<4xf32>) -> tensor<2x4x3x3xf32>
  %3 = ane.l2_norm %x {axes = array<i64: 1>, epsilon = 1.0e-12 : f32} : (tensor<2x4x3x3xf32>) -> tensor<2x4x3x3xf32>
  func.return
}
// CHECK-LABEL: func.func @norm(
// CHECK-NEXT:  %0 = ane.layer_norm %s, %g, %g {axes = array<i64: 1>, epsilon = 1.000000e-05 : f32} : (tensor<2x5xf32>, tensor<5xf32>, tensor<5xf32>) -> tensor<2x5xf32>
// CHECK-NEXT:  %1 = ane.instance_norm %x, %c, %c {epsilon = 1.000000e-05 : f32} : (tensor<2x4x3x3xf32>, tensor<4xf32>, tensor<4xf32>) -> tensor<2x4x3x3xf32>
// CHECK-NEXT:  %2 = ane.group_norm %x, %c, %c {num_groups = 2 : i64, epsilon = 1.000000e-05 : f32} : (tensor<2x4x3x3xf32>, tensor<4xf32>, tensor<4xf32>) -> tensor<2x4x3x3xf32>
// CHECK-NEXT:  %3 = ane.l2_norm %x {axes = array<i64: 1>, epsilon = 1.000000e-12 : f32} : (tensor<2x4x3x3xf32>) -> tensor<2x4x3x3xf32>
// CHECK-NEXT:  func.return

func.func @movement(%x: tensor<1x8x2x3xf32>, %y: tensor<1x2x4x6xf32>, %z: tensor<1x1x3xf32>) {
  %0 = ane.reshape %x : (tensor<1x8x2x3xf32>) -> tensor<8x6xf32>
  %1 = ane.transpose %x {perm = array<i64: 0, 2, 3, 1>} : (tensor<1x8x2x3xf32>) -> tensor<1x2x3x8xf32>
  %2 = ane.slice %x {starts = array<i64: 0, 1, 0, 0>, ends = array<i64: 1, 8, 2, 3>, steps = array<i64: 1, 2, 1, 1>} : (tensor<1x8x2x3xf32>) -> tensor<1x4x2x3xf32>
  %3 = ane.pad %x {pads = array<i64: 0, 0, 1, 2, 0, 0, 1, 0>} : (tensor<1x8x2x3xf32>) -> tensor<1x8x4x5xf32>
  %4 = ane.pad %x {pads = array<i64: 0, 0, 1, 2, 0, 0, 1, 0>, mode = "reflect"} : (tensor<1x8x2x3xf32>) -> tensor<1x8x4x5xf32>
  %5 = ane.pad %x {pads = array<i64: 0, 0, 0, 1, 0, 0, 0, 1>, mode = "constant", value = -1.0 : f32} : (tensor<1x8x2x3xf32>) -> tensor<1x8x2x5xf32>
  %6 = ane.tile %x {repeats = array<i64: 2, 1, 1, 2>} : (tensor<1x8x2x3xf32>) -> tensor<2x8x2x6xf32>
  %7 = ane.broadcast %z : (tensor<1x1x3xf32>) -> tensor<2x4x3xf32>
  %8 = ane.resize %x {mode = "nearest", scales = array<f32: 2.0, 2.0>} : (tensor<1x8x2x3xf32>) -> tensor<1x8x4x6xf32>
  %9 = ane.resize %x {mode = "bilinear", scales = array<f32: 1.5, 2.0>, coordinate_mode = "align_corners", nearest_mode = "floor"} : (tensor<1x8x2x3xf32>) -> tensor<1x8x3x6xf32>
  %10 = ane.depth_to_space %x {block_size = 2 : i64} : (tensor<1x8x2x3xf32>) -> tensor<1x2x4x6xf32>
  %11 = ane.depth_to_space %x {block_size = 2 : i64, mode = "CRD"} : (tensor<1x8x2x3xf32>) -> tensor<1x2x4x6xf32>
  %12 = ane.space_to_depth %y {block_size = 2 : i64} : (tensor<1x2x4x6xf32>) -> tensor<1x8x2x3xf32>
  %13 = ane.cast %x : (tensor<1x8x2x3xf32>) -> tensor<1x8x2x3xf16>
  %14 = ane.concat %x, %x {axis = 1 : i64} : (tensor<1x8x2x3xf32>, tensor<1x8x2x3xf32>) -> tensor<1x16x2x3xf32>
  %15, %16, %17 = ane.split %x {axis = 1 : i64} : (tensor<1x8x2x3xf32>) -> (tensor<1x2x2x3xf32>, tensor<1x5x2x3xf32>, tensor<1x1x2x3xf32>)
  func.return
}
// CHECK-LABEL: func.func @movement(
// CHECK-NEXT:  %0 = ane.reshape %x : (tensor<1x8x2x3xf32>) -> tensor<8x6xf32>
// CHECK-NEXT:  %1 = ane.transpose %x {perm = array<i64: 0, 2, 3, 1>} : (tensor<1x8x2x3xf32>) -> tensor<1x2x3x8xf32>
// CHECK-NEXT:  %2 = ane.slice %x {starts = array<i64: 0, 1, 0, 0>, ends = array<i64: 1, 8, 2, 3>, steps = array<i64: 1, 2, 1, 1>} : (tensor<1x8x2x3xf32>) -> tensor<1x4x2x3xf32>
// CHECK-NEXT:  %3 = ane.pad %x {pads = array<i64: 0, 0, 1, 2, 0, 0, 1, 0>} : (tensor<1x8x2x3xf32>) -> tensor<1x8x4x5xf32>
// CHECK-NEXT:  %4 = ane.pad %x {pads = array<i64: 0, 0, 1, 2, 0, 0, 1, 0>, mode = "reflect"} : (tensor<1x8x2x3xf32>) -> tensor<1x8x4x5xf32>
// CHECK-NEXT:  %5 = ane.pad %x {pads = array<i64: 0, 0, 0, 1, 0, 0, 0, 1>, value = -1.000000e+00 : f32} : (tensor<1x8x2x3xf32>) -> tensor<1x8x2x5xf32>
// CHECK-NEXT:  %6 = ane.tile %x {repeats = array<i64: 2, 1, 1, 2>} : (tensor<1x8x2x3xf32>) -> tensor<2x8x2x6xf32>
// CHECK-NEXT:  %7 = ane.broadcast %z : (tensor<1x1x3xf32>) -> tensor<2x4x3xf32>
// CHECK-NEXT:  %8 = ane.resize %x {mode = "nearest", scales = array<f32: 2.000000e+00, 2.000000e+00>} : (tensor<1x8x2x3xf32>) -> tensor<1x8x4x6xf32>
// CHECK-NEXT:  %9 = ane.resize %x {mode = "bilinear", scales = array<f32: 1.500000e+00, 2.000000e+00>, coordinate_mode = "align_corners", nearest_mode = "floor"} : (tensor<1x8x2x3xf32>) -> tensor<1x8x3x6xf32>
// CHECK-NEXT:  %10 = ane.depth_to_space %x {block_size = 2 : i64} : (tensor<1x8x2x3xf32>) -> tensor<1x2x4x6xf32>
// CHECK-NEXT:  %11 = ane.depth_to_space %x {block_size = 2 : i64, mode = "CRD"} : (tensor<1x8x2x3xf32>) -> tensor<1x2x4x6xf32>
// CHECK-NEXT:  %12 = ane.space_to_depth %y {block_size = 2 : i64} : (tensor<1x2x4x6xf32>) -> tensor<1x8x2x3xf32>
// CHECK-NEXT:  %13 = ane.cast %x : (tensor<1x8x2x3xf32>) -> tensor<1x8x2x3xf16>
// CHECK-NEXT:  %14 = ane.concat %x, %x {axis = 1 : i64} : (tensor<1x8x2x3xf32>, tensor<1x8x2x3xf32>) -> tensor<1x16x2x3xf32>
// CHECK-NEXT:  %15, %16, %17 = ane.split %x {axis = 1 : i64} : (tensor<1x8x2x3xf32>) -> (tensor<1x2x2x3xf32>, tensor<1x5x2x3xf32>, tensor<1x1x2x3xf32>)
// CHECK-NEXT:  func.return

func.func @segment(%x: tensor<1x4xf32>) -> tensor<1x4xf32> {
  %0 = ane.segment(%x) : (tensor<1x4xf32>) -> tensor<1x4xf32> {
  ^bb0(%a: tensor<1x4xf32>):
    %h = ane.cast %a : (tensor<1x4xf32>) -> tensor<1x4xf16>
    %r = ane.relu %h : tensor<1x4xf16>
    %o = ane.cast %r : (tensor<1x4xf16>) -> tensor<1x4xf32>
    ane.yield %o : tensor<1x4xf32>
  }
  func.return %0 : tensor<1x4xf32>
}
// CHECK-LABEL: func.func @segment(
// CHECK-NEXT:  %0 = ane.segment(%x) : (tensor<1x4xf32>) -> tensor<1x4xf32> {
// CHECK-NEXT:  ^bb0(%a: tensor<1x4xf32>):
// CHECK-NEXT:  %h = ane.cast %a : (tensor<1x4xf32>) -> tensor<1x4xf16>
// CHECK-NEXT:  %r = ane.relu %h : tensor<1x4xf16>
// CHECK-NEXT:  %o = ane.cast %r : (tensor<1x4xf16>) -> tensor<1x4xf32>
// CHECK-NEXT:  ane.yield %o : tensor<1x4xf32>
// CHECK-NEXT:  }
// CHECK-NEXT:  func.return %0 : tensor<1x4xf32>

func.func @defaults_and_discardable_attrs(%x: tensor<1x4x8x8xf32>, %w: tensor<4x4x1x1xf32>) {
  %0 = ane.gelu %x {approximate = "none", ane.name = "/act"} : tensor<1x4x8x8xf32>
  %1 = ane.conv %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64, ane.name = "/conv", ane.reason = "test"} : (tensor<1x4x8x8xf32>, tensor<4x4x1x1xf32>) -> tensor<1x4x8x8xf32>
  %2 = ane.reduce_max %x {axes = array<i64: 1>, keepdims = true} : (tensor<1x4x8x8xf32>) -> tensor<1x1x8x8xf32>
  %3 = ane.argmax %x {axis = 1 : i64, keepdims = true, select_last_index = false} : (tensor<1x4x8x8xf32>) -> tensor<1x1x8x8xi32>
  %4 = ane.avg_pool %x {kernel = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>, count_include_pad = false} : (tensor<1x4x8x8xf32>) -> tensor<1x4x4x4xf32>
  %5 = ane.pad %x {pads = array<i64: 0, 0, 0, 0, 0, 0, 1, 1>, mode = "constant", value = 0.0 : f32} : (tensor<1x4x8x8xf32>) -> tensor<1x4x9x9xf32>
  %6 = ane.resize %x {mode = "nearest", scales = array<f32: 2.0, 2.0>, coordinate_mode = "half_pixel", nearest_mode = "round_prefer_floor"} : (tensor<1x4x8x8xf32>) -> tensor<1x4x16x16xf32>
  %7 = ane.depth_to_space %x {block_size = 2 : i64, mode = "DCR"} : (tensor<1x4x8x8xf32>) -> tensor<1x1x16x16xf32>
  %8 = ane.matmul %x, %x {transpose_lhs = false, transpose_rhs = false} : (tensor<1x4x8x8xf32>, tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
  func.return
}
// CHECK-LABEL: func.func @defaults_and_discardable_attrs(
// CHECK-NEXT:  %0 = ane.gelu %x {ane.name = "/act"} : tensor<1x4x8x8xf32>
// CHECK-NEXT:  %1 = ane.conv %x, %w {ane.name = "/conv", ane.reason = "test", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x4x8x8xf32>, tensor<4x4x1x1xf32>) -> tensor<1x4x8x8xf32>
// CHECK-NEXT:  %2 = ane.reduce_max %x {axes = array<i64: 1>} : (tensor<1x4x8x8xf32>) -> tensor<1x1x8x8xf32>
// CHECK-NEXT:  %3 = ane.argmax %x {axis = 1 : i64} : (tensor<1x4x8x8xf32>) -> tensor<1x1x8x8xi32>
// CHECK-NEXT:  %4 = ane.avg_pool %x {kernel = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>} : (tensor<1x4x8x8xf32>) -> tensor<1x4x4x4xf32>
// CHECK-NEXT:  %5 = ane.pad %x {pads = array<i64: 0, 0, 0, 0, 0, 0, 1, 1>} : (tensor<1x4x8x8xf32>) -> tensor<1x4x9x9xf32>
// CHECK-NEXT:  %6 = ane.resize %x {mode = "nearest", scales = array<f32: 2.000000e+00, 2.000000e+00>} : (tensor<1x4x8x8xf32>) -> tensor<1x4x16x16xf32>
// CHECK-NEXT:  %7 = ane.depth_to_space %x {block_size = 2 : i64} : (tensor<1x4x8x8xf32>) -> tensor<1x1x16x16xf32>
// CHECK-NEXT:  %8 = ane.matmul %x, %x : (tensor<1x4x8x8xf32>, tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
// CHECK-NEXT:  func.return

func.func @multi_segment(%x: tensor<2xf32>, %y: tensor<2xf32>) -> (tensor<2xf32>, tensor<2xf32>) {
  %0, %1 = ane.segment(%x, %y) {ane.name = "seg0"} : (tensor<2xf32>, tensor<2xf32>) -> (tensor<2xf32>, tensor<2xf32>) {
  ^bb0(%a: tensor<2xf32>, %b: tensor<2xf32>):
    %c = ane.const dense<[1.0, -1.0]> : tensor<2xf32>
    %s = ane.add %a, %c : (tensor<2xf32>, tensor<2xf32>) -> tensor<2xf32>
    ane.yield %s, %b : tensor<2xf32>, tensor<2xf32>
  }
  func.return %0, %1 : tensor<2xf32>, tensor<2xf32>
}
// CHECK-LABEL: func.func @multi_segment(
// CHECK-NEXT:  %0, %1 = ane.segment(%x, %y) {ane.name = "seg0"} : (tensor<2xf32>, tensor<2xf32>) -> (tensor<2xf32>, tensor<2xf32>) {
// CHECK-NEXT:  ^bb0(%a: tensor<2xf32>, %b: tensor<2xf32>):
// CHECK-NEXT:  %c = ane.const dense<[1.000000e+00, -1.000000e+00]> : tensor<2xf32>
// CHECK-NEXT:  %s = ane.add %a, %c : (tensor<2xf32>, tensor<2xf32>) -> tensor<2xf32>
// CHECK-NEXT:  ane.yield %s, %b : tensor<2xf32>, tensor<2xf32>
// CHECK-NEXT:  }
// CHECK-NEXT:  func.return %0, %1 : tensor<2xf32>, tensor<2xf32>

func.func @empty_segment() {
  ane.segment() : () -> () {
    ane.yield
  }
  func.return
}
// CHECK-LABEL: func.func @empty_segment(
// CHECK-NEXT:  ane.segment() : () -> () {
// CHECK-NEXT:  ane.yield
// CHECK-NEXT:  }
// CHECK-NEXT:  func.return
