// RUN: anec opt %s -p to-anehw | filecheck %s
// RUN: anec opt %s -p to-anehw --print-op-generic | anec opt | filecheck %s

// Each op becomes tasks; a reshape that keeps W is an alias (no task); a yielded intermediate becomes
// the output port in place.
func.func @main(%x: tensor<1x8x6x6xf16>, %y: tensor<1x8x1x1xf16>) -> tensor<1x4x12x6xf16> {
  %r = ane.segment (%x, %y) : (tensor<1x8x6x6xf16>, tensor<1x8x1x1xf16>) -> tensor<1x4x12x6xf16> {
  ^bb0(%a: tensor<1x8x6x6xf16>, %b: tensor<1x8x1x1xf16>):
    %s = ane.add %a, %b {ane.name = "add"} : (tensor<1x8x6x6xf16>, tensor<1x8x1x1xf16>) -> tensor<1x8x6x6xf16>
    %w = ane.const dense<0.5> : tensor<8x8x1x1xf16>
    %c = ane.conv %s, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64, activation = "relu", ane.name = "conv"} : (tensor<1x8x6x6xf16>, tensor<8x8x1x1xf16>) -> tensor<1x8x6x6xf16>
    %v = ane.reshape %c {ane.name = "view"} : (tensor<1x8x6x6xf16>) -> tensor<1x4x12x6xf16>
    ane.yield %v : tensor<1x4x12x6xf16>
  }
  func.return %r : tensor<1x4x12x6xf16>
}

// CHECK:      %r = anehw.program(%x, %y) {arch = "h13"} : (tensor<1x8x6x6xf16>, tensor<1x8x1x1xf16>) -> tensor<1x4x12x6xf16> {
// CHECK-NEXT:   anehw.buffer @in0 {role = "input", shape = array<i64: 1, 8, 6, 6>, port = 0 : i64}
// CHECK-NEXT:   anehw.buffer @in1 {role = "input", shape = array<i64: 1, 8, 1, 1>, port = 1 : i64}
// CHECK-NEXT:   anehw.buffer @[[SUM:t[0-9]+]] {role = "intermediate", shape = array<i64: 1, 8, 6, 6>}
// CHECK-NEXT:   anehw.weight @[[W:w[0-9]+]] {handle = "{{.*}}", layout = "dense", shape = array<i64: 64>}
// CHECK-NEXT:   anehw.buffer @[[OUT:t[0-9]+]] {role = "output", shape = array<i64: 1, 4, 12, 6>, port = 0 : i64}
// The add broadcasts %b over H and W: zero row strides and a zero W step.
// CHECK-NEXT:   anehw.task {ane.name = "add", ane.op = "add", src1 = #anehw.view<@in0, rows [0, 0, 6, 1], offset 0, w 0 step 1>, src2 = #anehw.view<@in1, rows [0, 0, 1, 0], offset 0, w 0 step 0>, dst = #anehw.view<@[[SUM]], rows [0, 0, 6, 1], offset 0, w 0 step 1>, kernel_dma = {InBatch = 1 : i64, Kind = 4 : i64, OutBatch = 1 : i64}
// The conv streams its kernel densely, folds the ReLU (Neuron = 1), writes the output port directly.
// CHECK-NEXT:   anehw.task {ane.name = "conv", ane.op = "conv", src1 = #anehw.view<@[[SUM]], {{.*}}>, dst = #anehw.view<@[[OUT]], rows [0, 0, 6, 1], offset 0, w 0 step 1>, coeffs = {kernel = "[[W]]"}
// CHECK-SAME:   Kh = 1 : i64, Kw = 1 : i64, NumGroups = 1 : i64, OCGSize = 3 : i64
// CHECK-SAME:   Kind = 1 : i64, Neuron = 1 : i64
// CHECK-NEXT: }
// CHECK-NEXT: func.return %r

