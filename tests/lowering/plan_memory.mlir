// RUN: anec opt %s -p plan-memory | filecheck %s

// Three intermediates in a chain: @a dies when @c is born, so @c reuses @a's bytes; @b overlaps both
// in time and gets its own. Rows pad to 64 bytes (W = 40 fp16 = 80 B -> 128 B); buffers are 16 KB pages.
// Outputs take slots from 4, inputs follow; the weight section is slot 1.
func.func @main(%x: tensor<1x4x8x40xf16>) -> tensor<1x4x8x40xf16> {
  %r = anehw.program(%x) {arch = "h13"} : (tensor<1x4x8x40xf16>) -> tensor<1x4x8x40xf16> {
    anehw.buffer @in0 {role = "input", shape = array<i64: 1, 4, 8, 40>, port = 0 : i64}
    anehw.buffer @a {role = "intermediate", shape = array<i64: 1, 4, 8, 40>}
    anehw.buffer @b {role = "intermediate", shape = array<i64: 1, 4, 8, 40>}
    anehw.buffer @c {role = "intermediate", shape = array<i64: 1, 4, 8, 40>}
    anehw.weight @w {handle = "w", layout = "tensor", shape = array<i64: 1, 4, 1, 40>}
    anehw.buffer @out0 {role = "output", shape = array<i64: 1, 4, 8, 40>, port = 0 : i64}
    anehw.task {src1 = #anehw.view<@in0, rows [0, 0, 8, 1], offset 0, w 0 step 1>, dst = #anehw.view<@a, rows [0, 0, 8, 1], offset 0, w 0 step 1>, kernel_dma = {Kind = 5 : i64, Neuron = 1 : i64}}
    anehw.task {src1 = #anehw.view<@a, rows [0, 0, 8, 1], offset 0, w 0 step 1>, dst = #anehw.view<@b, rows [0, 0, 8, 1], offset 0, w 0 step 1>, kernel_dma = {Kind = 5 : i64, Neuron = 1 : i64}}
    anehw.task {src1 = #anehw.view<@b, rows [0, 0, 8, 1], offset 0, w 0 step 1>, src2 = #anehw.view<@w, rows [0, 0, 1, 0], offset 0, w 0 step 1>, dst = #anehw.view<@c, rows [0, 0, 8, 1], offset 0, w 0 step 1>, kernel_dma = {Kind = 4 : i64}}
    anehw.task {src1 = #anehw.view<@c, rows [0, 0, 8, 1], offset 4, w 3 step 2>, dst = #anehw.view<@out0, rows [0, 0, 8, 1], offset 0, w 0 step 1>, kernel_dma = {Kind = 10 : i64}}
  }
  func.return %r : tensor<1x4x8x40xf16>
}

// CHECK:      anehw.buffer @in0 {{.*}}slot = 5 : i64, offset = 0 : i64, size = 16384 : i64, live = array<i64: 0, 3>}
// CHECK-NEXT: anehw.buffer @a {{.*}}slot = 2 : i64, offset = [[A:[0-9]+]] : i64, size = 16384 : i64, live = array<i64: 0, 1>}
// CHECK-NEXT: anehw.buffer @b {{.*}}slot = 2 : i64, offset = [[B:[0-9]+]] : i64, size = 16384 : i64, live = array<i64: 1, 2>}
// CHECK-NEXT: anehw.buffer @c {{.*}}slot = 2 : i64, offset = [[A]] : i64, size = 16384 : i64, live = array<i64: 2, 3>}
// CHECK-NEXT: anehw.weight @w {{.*}}offset = 0 : i64, size = 512 : i64}
// CHECK-NEXT: anehw.buffer @out0 {{.*}}slot = 4 : i64, offset = 0 : i64, size = 16384 : i64, live = array<i64: 0, 3>}
// Strides are in 64-byte units: a 128-byte row is 2, a plane of 8 rows 16.
// CHECK-NEXT: anehw.task
// CHECK-SAME: tile_src = {En = 1 : i64, PlaneStride = 16 : i64, RowStride = 2 : i64, WStep = 1 : i64}
// CHECK-SAME: header = {RBE0 = 1 : i64, RBase0 = 5 : i64, WBE = 1 : i64, WBase = 2 : i64}
// CHECK-NEXT: anehw.task
// CHECK-NEXT: anehw.task
// The weight is read by a tile DMA from slot 1 (RBase1 = 1); its W axis repeats nothing, its rows broadcast.
// CHECK-SAME: Src2En = 1 : i64, Src2PlaneStride = 2 : i64
// CHECK-SAME: RBE1 = 1 : i64, RBase0 = 2 : i64, RBase1 = 1 : i64
// A view starting 4 rows (512 B = 8 units into @c, which sits at 0) and 3 pixels in, every second pixel.
// CHECK-NEXT: anehw.task
// CHECK-SAME: tile_src = {BaseAddr = 8 : i64, En = 1 : i64, PixelOffset0 = 3 : i64, PlaneStride = 16 : i64, RowStride = 2 : i64, WStep = 2 : i64}
// CHECK-SAME: EON = 1 : i64
