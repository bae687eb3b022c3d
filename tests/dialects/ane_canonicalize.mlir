// RUN: anec opt %s -p canonicalize | filecheck %s

// The movement ops' own canonicalization patterns (`ReshapeFolds`, `TransposeFolds` in
// dialects/ane.py), run by xDSL's `canonicalize` pass as the layout pass runs them. A folded op's
// replacement keeps the outer op's name; ops left without users are removed.

// A chain of reshapes is one reshape; a reshape to its input's shape is its input.
// CHECK-LABEL: func.func @reshape_chain
// CHECK-NEXT:    %[[R:.*]] = ane.reshape %x {ane.name = "d"} : (tensor<2x3x4xf32>) -> tensor<4x6xf32>
// CHECK-NEXT:    func.return %[[R]]
func.func @reshape_chain(%x: tensor<2x3x4xf32>) -> tensor<4x6xf32> {
  %a = ane.reshape %x {ane.name = "a"} : (tensor<2x3x4xf32>) -> tensor<6x4xf32>
  %b = ane.reshape %a {ane.name = "b"} : (tensor<6x4xf32>) -> tensor<24xf32>
  %c = ane.reshape %b {ane.name = "c"} : (tensor<24xf32>) -> tensor<24xf32>
  %d = ane.reshape %c {ane.name = "d"} : (tensor<24xf32>) -> tensor<4x6xf32>
  func.return %d : tensor<4x6xf32>
}

// CHECK-LABEL: func.func @reshape_to_same_shape
// CHECK-NEXT:    func.return %x
func.func @reshape_to_same_shape(%x: tensor<2x3xf32>) -> tensor<2x3xf32> {
  %a = ane.reshape %x {ane.name = "a"} : (tensor<2x3xf32>) -> tensor<2x3xf32>
  func.return %a : tensor<2x3xf32>
}

// A transpose of a transpose is one transpose by the composed permutation.
// CHECK-LABEL: func.func @transpose_chain
// CHECK-NEXT:    %[[T:.*]] = ane.transpose %x {ane.name = "b", perm = array<i64: 1, 2, 0>} : (tensor<2x3x4xf32>) -> tensor<3x4x2xf32>
// CHECK-NEXT:    func.return %[[T]]
func.func @transpose_chain(%x: tensor<2x3x4xf32>) -> tensor<3x4x2xf32> {
  %a = ane.transpose %x {ane.name = "a", perm = array<i64: 1, 0, 2>} : (tensor<2x3x4xf32>) -> tensor<3x2x4xf32>
  %b = ane.transpose %a {ane.name = "b", perm = array<i64: 0, 2, 1>} : (tensor<3x2x4xf32>) -> tensor<3x4x2xf32>
  func.return %b : tensor<3x4x2xf32>
}

// Transposes that undo each other, and the identity transpose, are gone.
// CHECK-LABEL: func.func @transposes_cancel
// CHECK-NEXT:    func.return %x
func.func @transposes_cancel(%x: tensor<2x3x4xf32>) -> tensor<2x3x4xf32> {
  %a = ane.transpose %x {ane.name = "a", perm = array<i64: 2, 0, 1>} : (tensor<2x3x4xf32>) -> tensor<4x2x3xf32>
  %b = ane.transpose %a {ane.name = "b", perm = array<i64: 1, 2, 0>} : (tensor<4x2x3xf32>) -> tensor<2x3x4xf32>
  %c = ane.transpose %b {ane.name = "c", perm = array<i64: 0, 1, 2>} : (tensor<2x3x4xf32>) -> tensor<2x3x4xf32>
  func.return %c : tensor<2x3x4xf32>
}

// A transpose that keeps the non-unit axes in order moves no data: it is a reshape.
// CHECK-LABEL: func.func @transpose_of_unit_axes
// CHECK-NEXT:    %[[R:.*]] = ane.reshape %x {ane.name = "t"} : (tensor<1x8x1x16xf32>) -> tensor<8x1x1x16xf32>
// CHECK-NEXT:    func.return %[[R]]
func.func @transpose_of_unit_axes(%x: tensor<1x8x1x16xf32>) -> tensor<8x1x1x16xf32> {
  %t = ane.transpose %x {ane.name = "t", perm = array<i64: 1, 0, 2, 3>} : (tensor<1x8x1x16xf32>) -> tensor<8x1x1x16xf32>
  func.return %t : tensor<8x1x1x16xf32>
}

// A reshape and a transpose do not fold into each other here (the layout pass moves them).
// CHECK-LABEL: func.func @mixed_chain_stays
// CHECK-NEXT:    %[[R:.*]] = ane.reshape %x
// CHECK-NEXT:    %[[T:.*]] = ane.transpose %[[R]]
// CHECK-NEXT:    func.return %[[T]]
func.func @mixed_chain_stays(%x: tensor<6x4xf32>) -> tensor<4x2x3xf32> {
  %r = ane.reshape %x {ane.name = "r"} : (tensor<6x4xf32>) -> tensor<2x3x4xf32>
  %t = ane.transpose %r {ane.name = "t", perm = array<i64: 2, 0, 1>} : (tensor<2x3x4xf32>) -> tensor<4x2x3xf32>
  func.return %t : tensor<4x2x3xf32>
}
