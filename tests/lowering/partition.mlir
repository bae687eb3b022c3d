// RUN: anec opt %s -p ane-partition | filecheck %s
// RUN: anec opt %s -p "ane-partition{min-segment-ops=3}" | filecheck %s --check-prefix=MIN

// conv -> relu -> TopK on the CPU -> add: two segments around the host op; the weight is cloned
// into the segment that uses it, and the host op keeps its reason.
func.func @main(%x: tensor<1x4x8x8xf32>, %k: tensor<1xi64>) -> tensor<1x4x8x2xf32> {
  %w = ane.const "w" : tensor<4x4x3x3xf32>
  %c = ane.conv %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x4x8x8xf32>, tensor<4x4x3x3xf32>) -> tensor<1x4x8x8xf32>
  %r = ane.relu %c : tensor<1x4x8x8xf32>
  %v, %i = host.op "onnx.TopK"(%r, %k) {attrs = {axis = 3 : i64}, version = 11 : i64} : (tensor<1x4x8x8xf32>, tensor<1xi64>) -> (tensor<1x4x8x2xf32>, tensor<1x4x8x2xi64>)
  %one = ane.const dense<1.0> : tensor<1x1x1x1xf32>
  %s = ane.add %v, %one : (tensor<1x4x8x2xf32>, tensor<1x1x1x1xf32>) -> tensor<1x4x8x2xf32>
  %d = ane.cast %i : (tensor<1x4x8x2xi64>) -> tensor<1x4x8x2xf32>
  %out = ane.add %s, %d : (tensor<1x4x8x2xf32>, tensor<1x4x8x2xf32>) -> tensor<1x4x8x2xf32>
  func.return %out : tensor<1x4x8x2xf32>
}

// CHECK:      %[[R:.*]] = ane.segment(%x) : (tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32> {
// CHECK-NEXT: ^{{.*}}(%[[X:.*]]: tensor<1x4x8x8xf32>):
// CHECK-NEXT:   %[[W:.*]] = ane.const "w" : tensor<4x4x3x3xf32>
// CHECK-NEXT:   %[[C:.*]] = ane.conv %[[X]], %[[W]]
// CHECK-NEXT:   %[[RR:.*]] = ane.relu %[[C]]
// CHECK-NEXT:   ane.yield %[[RR]] : tensor<1x4x8x8xf32>
// CHECK-NEXT: }
// CHECK-NEXT: %[[V:.*]], %[[I:.*]] = host.op "onnx.TopK"(%[[R]], %k) {{.*}}ane.reason = "onnx.TopK has no ANE equivalent, so it runs on the CPU"
// CHECK-NEXT: %[[D:.*]] = ane.cast %[[I]] {ane.reason = "tensor<1x4x8x2xi64> tensors do not reach the ANE, which computes in fp16"}
// CHECK-NEXT: %{{.*}} = ane.segment(%[[V]], %[[D]]) : (tensor<1x4x8x2xf32>, tensor<1x4x8x2xf32>) -> tensor<1x4x8x2xf32> {
// CHECK-NEXT: ^{{.*}}(%[[V2:.*]]: tensor<1x4x8x2xf32>, %[[D2:.*]]: tensor<1x4x8x2xf32>):
// CHECK-NEXT:   %[[ONE:.*]] = ane.const dense<1.000000e+00> : tensor<1x1x1x1xf32>
// CHECK-NEXT:   %[[S:.*]] = ane.add %[[V2]], %[[ONE]]
// CHECK-NEXT:   %[[O:.*]] = ane.add %[[S]], %[[D2]]
// CHECK-NEXT:   ane.yield %[[O]] : tensor<1x4x8x2xf32>
// CHECK-NEXT: }

// With min-segment-ops=3 neither two-op run is worth a dispatch: nothing stays on the ANE.
// MIN-NOT:    ane.segment
// MIN:        ane.conv {{.*}}ane.reason = "a run of 2 ANE op(s) is below min-segment-ops=3, so it stays on the CPU"
