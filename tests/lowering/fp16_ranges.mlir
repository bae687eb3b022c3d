// RUN: anec opt %s -p ane-fp16 | filecheck %s

// The range analysis without samples: inputs assumed in [-1, 1]. A 1x1 conv summing 256 inputs
// weighted 200 reaches 51200 when every input is 1, past the MAC port's 2^15 (proven by that
// witness; its relu stays within fp16); a log of sigmoid(x)·1e-9 takes values fp16 rounds to zero
// for every input (proven); a conv with small weights is not flagged.
// CHECK-LABEL: func.func @hazards
// CHECK:       ane.conv {{.*}}{ane.name = "hot", ane.fp16_warnings = ["range analysis: MAC saturation (proven): bound 5.12e+04, limit 32768; every input at the top of its range; assuming 'x' in [-1, 1]{{.*}}"]
// CHECK:       ane.relu %{{.*}} {ane.name = "after"} :
// CHECK:       ane.log %{{.*}} {ane.name = "logp", ane.fp16_warnings = ["range analysis: underflow (proven): bound 2.69e-10, limit 2.98023e-08; every input in range{{.*}}"]}
// CHECK:       ane.conv %{{.*}} {ane.name = "cool", strides
func.func @hazards(%x: tensor<1x256x1x1xf32> {ane.name = "x"}) -> (tensor<1x4x1x1xf32>, tensor<1x256x1x1xf32>, tensor<1x4x1x1xf32>) {
  %r:3 = ane.segment(%x) : (tensor<1x256x1x1xf32>) -> (tensor<1x4x1x1xf32>, tensor<1x256x1x1xf32>, tensor<1x4x1x1xf32>) {
  ^bb0(%a: tensor<1x256x1x1xf32>):
    %w = ane.const dense<200.0> : tensor<4x256x1x1xf32>
    %c = ane.conv %a, %w {ane.name = "hot", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x256x1x1xf32>, tensor<4x256x1x1xf32>) -> tensor<1x4x1x1xf32>
    %h = ane.relu %c {ane.name = "after"} : tensor<1x4x1x1xf32>
    %s = ane.sigmoid %a {ane.name = "gate"} : tensor<1x256x1x1xf32>
    %k = ane.const dense<1.0e-9> : tensor<1x1x1x1xf32>
    %p = ane.mul %s, %k {ane.name = "tiny"} : (tensor<1x256x1x1xf32>, tensor<1x1x1x1xf32>) -> tensor<1x256x1x1xf32>
    %l = ane.log %p {ane.name = "logp"} : tensor<1x256x1x1xf32>
    %v = ane.const dense<0.01> : tensor<4x256x1x1xf32>
    %d = ane.conv %a, %v {ane.name = "cool", strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x256x1x1xf32>, tensor<4x256x1x1xf32>) -> tensor<1x4x1x1xf32>
    ane.yield %h, %l, %d : tensor<1x4x1x1xf32>, tensor<1x256x1x1xf32>, tensor<1x4x1x1xf32>
  }
  func.return %r#0, %r#1, %r#2 : tensor<1x4x1x1xf32>, tensor<1x256x1x1xf32>, tensor<1x4x1x1xf32>
}
