// RUN: anec opt %s -p ane-fuse | filecheck %s

// A conv followed by a batch norm written as (x - mean) * scale + shift, then ReLU6: the scale goes
// into the weights, the shift into the bias, the clamp into the epilogue.
// CHECK-LABEL: func.func @conv_bn_relu6
// CHECK:         %[[W:.*]] = ane.const dense<[{{\[\[\[}}2.000000e+00]]], {{\[\[\[}}-1.000000e+00]]]]> : tensor<2x1x1x1xf32>
// CHECK:         %[[B:.*]] = ane.const dense<[1.000000e+00, 1.500000e+00]> : tensor<2xf32>
// CHECK:         %[[C:.*]] = ane.conv %x, %[[W]], %[[B]] {ane.name = "conv", {{.*}}activation = "clamp", activation_params = array<f32: 0.000000e+00, 6.000000e+00>}
// CHECK-NEXT:    ane.yield %[[C]]
func.func @conv_bn_relu6(%in: tensor<1x1x3x3xf32>) -> tensor<1x2x3x3xf32> {
  %r = ane.segment(%in) : (tensor<1x1x3x3xf32>) -> tensor<1x2x3x3xf32> {
  ^bb0(%x: tensor<1x1x3x3xf32>):
    %w = ane.const dense<[[[[1.0]]], [[[1.0]]]]> : tensor<2x1x1x1xf32>
    %c = ane.conv %x, %w {ane.name = "conv", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x1x3x3xf32>, tensor<2x1x1x1xf32>) -> tensor<1x2x3x3xf32>
    %mean = ane.const dense<[[[[0.5]], [[-0.5]]]]> : tensor<1x2x1x1xf32>
    %scale = ane.const dense<[[[[2.0]], [[-1.0]]]]> : tensor<1x2x1x1xf32>
    %shift = ane.const dense<[[[[2.0]], [[2.0]]]]> : tensor<1x2x1x1xf32>
    %a = ane.sub %c, %mean {ane.name = "bn/sub"} : (tensor<1x2x3x3xf32>, tensor<1x2x1x1xf32>) -> tensor<1x2x3x3xf32>
    %b = ane.mul %a, %scale {ane.name = "bn/mul"} : (tensor<1x2x3x3xf32>, tensor<1x2x1x1xf32>) -> tensor<1x2x3x3xf32>
    %d = ane.add %b, %shift {ane.name = "bn/add"} : (tensor<1x2x3x3xf32>, tensor<1x2x1x1xf32>) -> tensor<1x2x3x3xf32>
    %y = ane.clamp %d {ane.name = "relu6", min = 0.0 : f32, max = 6.0 : f32} : tensor<1x2x3x3xf32>
    ane.yield %y : tensor<1x2x3x3xf32>
  }
  func.return %r : tensor<1x2x3x3xf32>
}

// A conv result used twice keeps its consumers: fusing would change the other user's input.
// CHECK-LABEL: func.func @shared_result
// CHECK:         %[[C:.*]] = ane.conv %x, %{{.*}} {ane.name = "conv"{{.*}}}
// CHECK-NOT:     activation
// CHECK:         ane.relu %[[C]]
func.func @shared_result(%x: tensor<1x1x3x3xf32>) -> (tensor<1x1x3x3xf32>, tensor<1x1x3x3xf32>) {
  %w = ane.const dense<2.0> : tensor<1x1x1x1xf32>
  %c = ane.conv %x, %w {ane.name = "conv", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x1x3x3xf32>, tensor<1x1x1x1xf32>) -> tensor<1x1x3x3xf32>
  %y = ane.relu %c : tensor<1x1x3x3xf32>
  func.return %c, %y : tensor<1x1x3x3xf32>, tensor<1x1x3x3xf32>
}

// Nothing is fused across a segment edge: the bias add outside the segment stays there.
// CHECK-LABEL: func.func @across_edge
// CHECK:         ane.segment
// CHECK:           ane.conv %{{[a-z0-9]+}}, %{{[a-z0-9]+}} {ane.name = "conv"
// CHECK:         ane.add %{{.*}} {ane.name = "bias"}
func.func @across_edge(%in: tensor<1x1x3x3xf32>) -> tensor<1x1x3x3xf32> {
  %r = ane.segment(%in) : (tensor<1x1x3x3xf32>) -> tensor<1x1x3x3xf32> {
  ^bb0(%x: tensor<1x1x3x3xf32>):
    %w = ane.const dense<2.0> : tensor<1x1x1x1xf32>
    %c = ane.conv %x, %w {ane.name = "conv", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x1x3x3xf32>, tensor<1x1x1x1xf32>) -> tensor<1x1x3x3xf32>
    ane.yield %c : tensor<1x1x3x3xf32>
  }
  %b = ane.const dense<1.0> : tensor<1x1x1x1xf32>
  %y = ane.add %r, %b {ane.name = "bias"} : (tensor<1x1x3x3xf32>, tensor<1x1x1x1xf32>) -> tensor<1x1x3x3xf32>
  func.return %y : tensor<1x1x3x3xf32>
}

// Elementwise chains are scheduled right after their producer (so the hardware can chain them).
// CHECK-LABEL: func.func @chains
// CHECK:         %[[A:.*]] = ane.exp %x
// CHECK-NEXT:    %[[B:.*]] = ane.neg %[[A]]
// CHECK-NEXT:    ane.abs %[[B]]
// CHECK:         ane.sqrt %y
func.func @chains(%in: tensor<4xf32>, %in2: tensor<4xf32>) -> (tensor<4xf32>, tensor<4xf32>) {
  %r:2 = ane.segment(%in, %in2) : (tensor<4xf32>, tensor<4xf32>) -> (tensor<4xf32>, tensor<4xf32>) {
  ^bb0(%x: tensor<4xf32>, %y: tensor<4xf32>):
    %a = ane.exp %x : tensor<4xf32>
    %s = ane.sqrt %y : tensor<4xf32>
    %b = ane.neg %a : tensor<4xf32>
    %c = ane.abs %b : tensor<4xf32>
    ane.yield %c, %s : tensor<4xf32>, tensor<4xf32>
  }
  func.return %r#0, %r#1 : tensor<4xf32>, tensor<4xf32>
}
