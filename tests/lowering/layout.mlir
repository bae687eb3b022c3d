// RUN: anec opt %s -p ane-layout | filecheck %s

// A linear layer on (B, S, C) becomes a 1x1 conv on (B, C, 1, S); the elementwise ops after it
// stay channel-major, so the only transposes left convert the function's input and output.
// CHECK-LABEL: func.func @linear_relu
// CHECK:         %[[R:.*]] = ane.reshape %x {{.*}} -> tensor<1x1x16x8xf32>
// CHECK-NEXT:    %[[X:.*]] = ane.transpose %[[R]] {{.*}}perm = array<i64: 0, 3, 1, 2>{{.*}} -> tensor<1x8x1x16xf32>
// CHECK:         %[[C:.*]] = ane.conv %[[X]], %{{.*}} {ane.name = "fc"{{.*}} : (tensor<1x8x1x16xf32>, tensor<4x8x1x1xf32>) -> tensor<1x4x1x16xf32>
// CHECK:         %[[B:.*]] = ane.add %[[C]], %{{.*}} {ane.name = "bias"} : (tensor<1x4x1x16xf32>, tensor<1x4x1x1xf32>) -> tensor<1x4x1x16xf32>
// CHECK-NEXT:    %[[R:.*]] = ane.relu %[[B]] {ane.name = "act"} : tensor<1x4x1x16xf32>
// CHECK-NEXT:    %[[U:.*]] = ane.reshape %[[R]] {{.*}} -> tensor<1x4x16xf32>
// CHECK-NEXT:    %[[O:.*]] = ane.transpose %[[U]] {{.*}}perm = array<i64: 0, 2, 1>{{.*}} -> tensor<1x16x4xf32>
// CHECK-NEXT:    func.return %[[O]]
func.func @linear_relu(%x: tensor<1x16x8xf32>) -> tensor<1x16x4xf32> {
  %w = ane.const dense<0.5> : tensor<1x8x4xf32>
  %b = ane.const dense<[[[1.0, 2.0, 3.0, 4.0]]]> : tensor<1x1x4xf32>
  %y = ane.matmul %x, %w {ane.name = "fc"} : (tensor<1x16x8xf32>, tensor<1x8x4xf32>) -> tensor<1x16x4xf32>
  %z = ane.add %y, %b {ane.name = "bias"} : (tensor<1x16x4xf32>, tensor<1x1x4xf32>) -> tensor<1x16x4xf32>
  %r = ane.relu %z {ane.name = "act"} : tensor<1x16x4xf32>
  func.return %r : tensor<1x16x4xf32>
}

// Transposes that undo each other vanish; reshape chains collapse.
// CHECK-LABEL: func.func @cancel
// CHECK-NEXT:    %[[E:.*]] = ane.exp %x : tensor<2x3x1x5xf32>
// CHECK-NEXT:    %[[R:.*]] = ane.reshape %[[E]] : (tensor<2x3x1x5xf32>) -> tensor<2x3x5xf32>
// CHECK-NEXT:    func.return %[[R]]
func.func @cancel(%x: tensor<2x3x1x5xf32>) -> tensor<2x3x5xf32> {
  %t = ane.transpose %x {perm = array<i64: 0, 3, 2, 1>} : (tensor<2x3x1x5xf32>) -> tensor<2x5x1x3xf32>
  %e = ane.exp %t : tensor<2x5x1x3xf32>
  %u = ane.transpose %e {perm = array<i64: 0, 3, 2, 1>} : (tensor<2x5x1x3xf32>) -> tensor<2x3x1x5xf32>
  %r = ane.reshape %u : (tensor<2x3x1x5xf32>) -> tensor<6x5xf32>
  %s = ane.reshape %r : (tensor<6x5xf32>) -> tensor<2x3x5xf32>
  func.return %s : tensor<2x3x5xf32>
}

// A 1-D convolution runs as a 2-D one over (N, C, 1, W).
// CHECK-LABEL: func.func @conv1d
// CHECK:         ane.conv %{{.*}}, %{{.*}} {ane.name = "c", strides = array<i64: 1, 2>, pads = array<i64: 0, 1, 0, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x4x1x20xf32>, tensor<6x4x1x3xf32>) -> tensor<1x6x1x10xf32>
func.func @conv1d(%x: tensor<1x4x20xf32>) -> tensor<1x6x10xf32> {
  %w = ane.const dense<0.1> : tensor<6x4x3xf32>
  %y = ane.conv %x, %w {ane.name = "c", strides = array<i64: 2>, pads = array<i64: 1, 1>, dilations = array<i64: 1>, groups = 1 : i64} : (tensor<1x4x20xf32>, tensor<6x4x3xf32>) -> tensor<1x6x10xf32>
  func.return %y : tensor<1x6x10xf32>
}

// Attention on channel-major projections: the head split and the key transpose become a free
// reshape and a matmul flag; no transpose is left.
// CHECK-LABEL: func.func @attention_scores
// CHECK-NOT:     ane.transpose
// CHECK:         ane.matmul %{{.*}}, %{{.*}} {ane.name = "scores", transpose_lhs = true} : (tensor<1x2x4x16xf32>, tensor<1x2x4x16xf32>) -> tensor<1x2x16x16xf32>
// CHECK-NOT:     ane.transpose
func.func @attention_scores(%q: tensor<1x8x16xf32>, %k: tensor<1x8x16xf32>) -> tensor<1x2x16x16xf32> {
  %qs = ane.transpose %q {perm = array<i64: 0, 2, 1>} : (tensor<1x8x16xf32>) -> tensor<1x16x8xf32>
  %ks = ane.transpose %k {perm = array<i64: 0, 2, 1>} : (tensor<1x8x16xf32>) -> tensor<1x16x8xf32>
  %qh = ane.reshape %qs : (tensor<1x16x8xf32>) -> tensor<1x16x2x4xf32>
  %kh = ane.reshape %ks : (tensor<1x16x8xf32>) -> tensor<1x16x2x4xf32>
  %x = ane.transpose %qh {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x16x2x4xf32>) -> tensor<1x2x16x4xf32>
  %y = ane.transpose %kh {perm = array<i64: 0, 2, 3, 1>} : (tensor<1x16x2x4xf32>) -> tensor<1x2x4x16xf32>
  %s = ane.matmul %x, %y {ane.name = "scores"} : (tensor<1x2x16x4xf32>, tensor<1x2x4x16xf32>) -> tensor<1x2x16x16xf32>
  func.return %s : tensor<1x2x16x16xf32>
}

// A linear layer after a matmul of two activations (attention's output projection): the matmul
// writes its result transposed, so the projection's NCHW input needs no transpose. (Sinking the
// transpose back below the reshape used to undo this rewrite forever.)
// CHECK-LABEL: func.func @mix_then_project
// CHECK-NEXT:    %[[M:.*]] = ane.matmul %v, %p {ane.name = "mix", transpose_lhs = true, transpose_rhs = true} {{.*}} -> tensor<1x8x16xf32>
// CHECK-NEXT:    %[[R:.*]] = ane.reshape %[[M]] {{.*}} -> tensor<1x8x1x16xf32>
// CHECK:         ane.conv %[[R]], %{{.*}} {ane.name = "out"
func.func @mix_then_project(%p: tensor<1x16x16xf32>, %v: tensor<1x16x8xf32>) -> tensor<1x16x8xf32> {
  %m = ane.matmul %p, %v {ane.name = "mix"} : (tensor<1x16x16xf32>, tensor<1x16x8xf32>) -> tensor<1x16x8xf32>
  %w = ane.const dense<0.5> : tensor<1x8x8xf32>
  %o = ane.matmul %m, %w {ane.name = "out"} : (tensor<1x16x8xf32>, tensor<1x8x8xf32>) -> tensor<1x16x8xf32>
  func.return %o : tensor<1x16x8xf32>
}
