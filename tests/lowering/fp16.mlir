// RUN: anec opt %s -p ane-fp16 | filecheck %s

// Inside a segment everything becomes f16, with casts only at its edges; the epsilon is raised,
// the -inf mask becomes finite and the written-out softmax subtracts its maximum. Each fix is
// recorded on the op it changed. Ops outside the segment stay f32.
// CHECK-LABEL: func.func @attention_tail
// CHECK:         ane.segment(%x, %m)
// CHECK-NEXT:    ^{{.*}}(%[[X:.*]]: tensor<1x2x4x8xf32>, %[[M:.*]]: tensor<1x1x1x8xf32>):
// CHECK-NEXT:      %[[XH:.*]] = ane.cast %[[X]] {{.*}} : (tensor<1x2x4x8xf32>) -> tensor<1x2x4x8xf16>
// CHECK-NEXT:      %[[MH:.*]] = ane.cast %[[M]] {{.*}} : (tensor<1x1x1x8xf32>) -> tensor<1x1x1x8xf16>
// CHECK:           ane.layer_norm %[[XH]], {{.*}}ane.fp16_fixes = ["epsilon 1e-12 raised to 1e-07{{.*}}"], epsilon = 1.000000e-07 : f32{{.*}} -> tensor<1x2x4x8xf16>
// CHECK:           ane.const dense<-1.000000e+04> : tensor<1x1x1x1xf16>
// CHECK-NEXT:      ane.mul %[[MH]], %{{.*}} {ane.name = "mask", ane.fp16_fixes = ["mask value -3.4e+38 is not finite in fp16; replaced by -10000"]}
// CHECK:           %[[S:.*]] = ane.softmax %{{.*}} {ane.name = "probs", ane.fp16_fixes = ["softmax written as exp(x)/sum(exp(x)) {{.*}}"], axis = 3 : i64} : tensor<1x2x4x8xf16>
// CHECK-NEXT:      %[[O:.*]] = ane.cast %[[S]] {{.*}} : (tensor<1x2x4x8xf16>) -> tensor<1x2x4x8xf32>
// CHECK-NEXT:      ane.yield %[[O]] : tensor<1x2x4x8xf32>
// CHECK:         ane.exp %{{.*}} : tensor<1x2x4x8xf32>
func.func @attention_tail(%x: tensor<1x2x4x8xf32>, %m: tensor<1x1x1x8xf32>) -> tensor<1x2x4x8xf32> {
  %r = ane.segment(%x, %m) : (tensor<1x2x4x8xf32>, tensor<1x1x1x8xf32>) -> tensor<1x2x4x8xf32> {
  ^bb0(%a: tensor<1x2x4x8xf32>, %mask: tensor<1x1x1x8xf32>):
    %g = ane.const dense<1.0> : tensor<8xf32>
    %b = ane.const dense<0.0> : tensor<8xf32>
    %n = ane.layer_norm %a, %g, %b {ane.name = "ln", epsilon = 1.0e-12 : f32, axes = array<i64: 3>} : (tensor<1x2x4x8xf32>, tensor<8xf32>, tensor<8xf32>) -> tensor<1x2x4x8xf32>
    %inf = ane.const dense<-3.40282347e+38> : tensor<1x1x1x1xf32>
    %mm = ane.mul %mask, %inf {ane.name = "mask"} : (tensor<1x1x1x8xf32>, tensor<1x1x1x1xf32>) -> tensor<1x1x1x8xf32>
    %s = ane.add %n, %mm {ane.name = "scores"} : (tensor<1x2x4x8xf32>, tensor<1x1x1x8xf32>) -> tensor<1x2x4x8xf32>
    %e = ane.exp %s : tensor<1x2x4x8xf32>
    %t = ane.reduce_sum %e {axes = array<i64: 3>} : (tensor<1x2x4x8xf32>) -> tensor<1x2x4x1xf32>
    %p = ane.div %e, %t {ane.name = "probs"} : (tensor<1x2x4x8xf32>, tensor<1x2x4x1xf32>) -> tensor<1x2x4x8xf32>
    ane.yield %p : tensor<1x2x4x8xf32>
  }
  %host = ane.exp %r : tensor<1x2x4x8xf32>
  func.return %host : tensor<1x2x4x8xf32>
}
