// RUN: anec opt %s -p 'ane-tile{target=m1}' | filecheck %s

// Stride 4 is beyond the M1's 2: a 4x4/4 patchify conv is a space-to-depth by 4 and a 1x1 conv
// whose weights hold the 16 taps as channels.
// CHECK-LABEL: func.func @stride4
// CHECK:         %[[B:.*]] = ane.space_to_depth %x {ane.name = "patchify#tile0", ane.tile_of = "patchify", block_size = 4 : i64} : (tensor<1x3x16x16xf32>) -> tensor<1x48x4x4xf32>
// CHECK:         ane.conv %[[B]], %{{.*}} {ane.name = "patchify#tile1", ane.tile_of = "patchify", strides = array<i64: 1, 1>{{.*}} : (tensor<1x48x4x4xf32>, tensor<8x48x1x1xf32>) -> tensor<1x8x4x4xf32>
func.func @stride4(%in: tensor<1x3x16x16xf32>) -> tensor<1x8x4x4xf32> {
  %r = ane.segment(%in) : (tensor<1x3x16x16xf32>) -> tensor<1x8x4x4xf32> {
  ^bb0(%x: tensor<1x3x16x16xf32>):
    %w = ane.const dense<0.1> : tensor<8x3x4x4xf32>
    %c = ane.conv %x, %w {ane.name = "patchify", strides = array<i64: 4, 4>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x3x16x16xf32>, tensor<8x3x4x4xf32>) -> tensor<1x8x4x4xf32>
    ane.yield %c : tensor<1x8x4x4xf32>
  }
  func.return %r : tensor<1x8x4x4xf32>
}

// Stride 4 along W only, a 1-channel 1x16 kernel: the input is read in 4 stride phases (phase a
// reads columns a, a+4, ...), concatenated to 4 channels for one stride-1 conv of 4 taps whose
// channel a holds taps a, a+4, a+8, a+12 -- not 16 one-tap windows.
// CHECK-LABEL: func.func @stride4_phases
// CHECK:         %[[P0:.*]] = ane.slice %x {{.*}}starts = array<i64: 0, 0, 0, 0>, ends = array<i64: 1, 1, 1, 61>, steps = array<i64: 1, 1, 1, 4>} : (tensor<1x1x1x64xf32>) -> tensor<1x1x1x16xf32>
// CHECK:         %[[P3:.*]] = ane.slice %x {{.*}}starts = array<i64: 0, 0, 0, 3>, ends = array<i64: 1, 1, 1, 64>, steps = array<i64: 1, 1, 1, 4>} : (tensor<1x1x1x64xf32>) -> tensor<1x1x1x16xf32>
// CHECK:         %[[C:.*]] = ane.concat %[[P0]], %{{.*}}, %{{.*}}, %[[P3]] {{.*}} -> tensor<1x4x1x16xf32>
// CHECK:         ane.conv %[[C]], %{{.*}} {ane.name = "phased#tile{{.*}}", ane.tile_of = "phased", strides = array<i64: 1, 1>{{.*}} : (tensor<1x4x1x16xf32>, tensor<8x4x1x4xf32>) -> tensor<1x8x1x13xf32>
// CHECK-NOT:     ane.conv
func.func @stride4_phases(%in: tensor<1x1x1x64xf32>) -> tensor<1x8x1x13xf32> {
  %r = ane.segment(%in) : (tensor<1x1x1x64xf32>) -> tensor<1x8x1x13xf32> {
  ^bb0(%x: tensor<1x1x1x64xf32>):
    %w = ane.const dense<0.1> : tensor<8x1x1x16xf32>
    %c = ane.conv %x, %w {ane.name = "phased", strides = array<i64: 1, 4>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x1x1x64xf32>, tensor<8x1x1x16xf32>) -> tensor<1x8x1x13xf32>
    ane.yield %c : tensor<1x8x1x13xf32>
  }
  func.return %r : tensor<1x8x1x13xf32>
}

// A pool with stride 3 pools at stride 1 and keeps every third output.
// CHECK-LABEL: func.func @pool_stride3
// CHECK:         %[[P:.*]] = ane.max_pool %x {ane.name = "pool#tile0", ane.tile_of = "pool", kernel = array<i64: 3, 3>, strides = array<i64: 1, 1>{{.*}} -> tensor<1x2x7x7xf32>
// CHECK-NEXT:    ane.slice %[[P]] {{.*}}steps = array<i64: 1, 1, 3, 3>} : (tensor<1x2x7x7xf32>) -> tensor<1x2x3x3xf32>
func.func @pool_stride3(%in: tensor<1x2x9x9xf32>) -> tensor<1x2x3x3xf32> {
  %r = ane.segment(%in) : (tensor<1x2x9x9xf32>) -> tensor<1x2x3x3xf32> {
  ^bb0(%x: tensor<1x2x9x9xf32>):
    %p = ane.max_pool %x {ane.name = "pool", kernel = array<i64: 3, 3>, strides = array<i64: 3, 3>, pads = array<i64: 0, 0, 0, 0>} : (tensor<1x2x9x9xf32>) -> tensor<1x2x3x3xf32>
    ane.yield %p : tensor<1x2x3x3xf32>
  }
  func.return %r : tensor<1x2x3x3xf32>
}

// A 1x17 kernel (fp16 limit 13 on the M1) on 2 channels: blocks of 9 and 8 taps read shifted
// windows (the input padded one more column, where the 8-tap block's ninth tap is zero), which
// concatenated are the 4 channels of one 1x9 conv; the ReLU stays in its epilogue.
// CHECK-LABEL: func.func @wide_kernel
// CHECK:         %[[P:.*]] = ane.pad %x {{.*}}pads = array<i64: 0, 0, 0, 8, 0, 0, 0, 8>
// CHECK:         %[[E:.*]] = ane.pad %[[P]] {{.*}}pads = array<i64: 0, 0, 0, 0, 0, 0, 0, 1>
// CHECK:         %[[A:.*]] = ane.slice %[[E]] {{.*}}starts = array<i64: 0, 0, 0, 0>{{.*}} -> tensor<1x2x1x28xf32>
// CHECK:         %[[B:.*]] = ane.slice %[[E]] {{.*}}starts = array<i64: 0, 0, 0, 9>{{.*}} -> tensor<1x2x1x28xf32>
// CHECK:         %[[C:.*]] = ane.concat %[[A]], %[[B]] {{.*}} -> tensor<1x4x1x28xf32>
// CHECK:         ane.conv %[[C]], %{{.*}} {{.*}}activation = "relu"{{.*}} : (tensor<1x4x1x28xf32>, tensor<4x4x1x9xf32>) -> tensor<1x4x1x20xf32>
// CHECK-NOT:     ane.add
func.func @wide_kernel(%in: tensor<1x2x1x20xf32>) -> tensor<1x4x1x20xf32> {
  %r = ane.segment(%in) : (tensor<1x2x1x20xf32>) -> tensor<1x4x1x20xf32> {
  ^bb0(%x: tensor<1x2x1x20xf32>):
    %w = ane.const dense<0.1> : tensor<4x2x1x17xf32>
    %c = ane.conv %x, %w {ane.name = "smear", strides = array<i64: 1, 1>, pads = array<i64: 0, 8, 0, 8>, dilations = array<i64: 1, 1>, groups = 1 : i64, activation = "relu"} : (tensor<1x2x1x20xf32>, tensor<4x2x1x17xf32>) -> tensor<1x4x1x20xf32>
    ane.yield %c : tensor<1x4x1x20xf32>
  }
  func.return %r : tensor<1x4x1x20xf32>
}

// A pad of 20 is two pads within the 16 limit.
// CHECK-LABEL: func.func @big_pad
// CHECK:         %[[A:.*]] = ane.pad %x {ane.name = "pad#tile0", ane.tile_of = "pad", pads = array<i64: 0, 0, 16, 0, 0, 0, 0, 3>
// CHECK-NEXT:    ane.pad %[[A]] {ane.name = "pad#tile1", ane.tile_of = "pad", pads = array<i64: 0, 0, 4, 0, 0, 0, 0, 0>
func.func @big_pad(%in: tensor<1x1x4x4xf32>) -> tensor<1x1x24x7xf32> {
  %r = ane.segment(%in) : (tensor<1x1x4x4xf32>) -> tensor<1x1x24x7xf32> {
  ^bb0(%x: tensor<1x1x4x4xf32>):
    %p = ane.pad %x {ane.name = "pad", pads = array<i64: 0, 0, 20, 0, 0, 0, 0, 3>} : (tensor<1x1x4x4xf32>) -> tensor<1x1x24x7xf32>
    ane.yield %p : tensor<1x1x24x7xf32>
  }
  func.return %r : tensor<1x1x24x7xf32>
}
