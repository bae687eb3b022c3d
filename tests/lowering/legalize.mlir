// RUN: anec opt %s -p ane-legalize | filecheck %s

// GELU written with erf (BERT's formula) becomes one ane.gelu named after the outermost mul.
// CHECK-LABEL: func.func @gelu_erf
// CHECK-NEXT:    %{{.*}} = ane.gelu %x {ane.name = "/act/Mul_1"} : tensor<1x4x8xf32>
// CHECK-NEXT:    func.return
func.func @gelu_erf(%x: tensor<1x4x8xf32>) -> tensor<1x4x8xf32> {
  %c = ane.const dense<1.4142135> : tensor<1x1x1xf32>
  %one = ane.const dense<1.0> : tensor<1x1x1xf32>
  %half = ane.const dense<0.5> : tensor<1x1x1xf32>
  %d = ane.div %x, %c {ane.name = "/act/Div"} : (tensor<1x4x8xf32>, tensor<1x1x1xf32>) -> tensor<1x4x8xf32>
  %e = ane.erf %d {ane.name = "/act/Erf"} : tensor<1x4x8xf32>
  %a = ane.add %e, %one {ane.name = "/act/Add"} : (tensor<1x4x8xf32>, tensor<1x1x1xf32>) -> tensor<1x4x8xf32>
  %m = ane.mul %x, %a {ane.name = "/act/Mul"} : (tensor<1x4x8xf32>, tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
  %y = ane.mul %m, %half {ane.name = "/act/Mul_1"} : (tensor<1x4x8xf32>, tensor<1x1x1xf32>) -> tensor<1x4x8xf32>
  func.return %y : tensor<1x4x8xf32>
}

// GPT-2's tanh GELU: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
// CHECK-LABEL: func.func @gelu_tanh
// CHECK-NEXT:    %{{.*}} = ane.gelu %x {ane.name = "mlp/act", approximate = "tanh"} : tensor<2x8xf32>
// CHECK-NEXT:    func.return
func.func @gelu_tanh(%x: tensor<2x8xf32>) -> tensor<2x8xf32> {
  %three = ane.const dense<3.0> : tensor<1x1xf32>
  %k = ane.const dense<0.044715> : tensor<1x1xf32>
  %s = ane.const dense<0.7978846> : tensor<1x1xf32>
  %one = ane.const dense<1.0> : tensor<1x1xf32>
  %half = ane.const dense<0.5> : tensor<1x1xf32>
  %p = ane.pow %x, %three : (tensor<2x8xf32>, tensor<1x1xf32>) -> tensor<2x8xf32>
  %kp = ane.mul %k, %p : (tensor<1x1xf32>, tensor<2x8xf32>) -> tensor<2x8xf32>
  %i = ane.add %x, %kp : (tensor<2x8xf32>, tensor<2x8xf32>) -> tensor<2x8xf32>
  %si = ane.mul %i, %s : (tensor<2x8xf32>, tensor<1x1xf32>) -> tensor<2x8xf32>
  %t = ane.tanh %si : tensor<2x8xf32>
  %a = ane.add %one, %t : (tensor<1x1xf32>, tensor<2x8xf32>) -> tensor<2x8xf32>
  %hx = ane.mul %half, %x : (tensor<1x1xf32>, tensor<2x8xf32>) -> tensor<2x8xf32>
  %y = ane.mul %hx, %a {ane.name = "mlp/act"} : (tensor<2x8xf32>, tensor<2x8xf32>) -> tensor<2x8xf32>
  func.return %y : tensor<2x8xf32>
}

// A product that only resembles GELU (0.4 instead of 0.5) is left alone.
// CHECK-LABEL: func.func @not_gelu
// CHECK:         ane.erf
// CHECK-NOT:     ane.gelu
func.func @not_gelu(%x: tensor<4xf32>) -> tensor<4xf32> {
  %c = ane.const dense<1.4142135> : tensor<1xf32>
  %one = ane.const dense<1.0> : tensor<1xf32>
  %half = ane.const dense<0.4> : tensor<1xf32>
  %d = ane.div %x, %c : (tensor<4xf32>, tensor<1xf32>) -> tensor<4xf32>
  %e = ane.erf %d : tensor<4xf32>
  %a = ane.add %e, %one : (tensor<4xf32>, tensor<1xf32>) -> tensor<4xf32>
  %m = ane.mul %x, %a : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  %y = ane.mul %m, %half : (tensor<4xf32>, tensor<1xf32>) -> tensor<4xf32>
  func.return %y : tensor<4xf32>
}

// Masked attention: the ANE's fused sdpa ignores masks, so it is spelled out.
// CHECK-LABEL: func.func @masked_sdpa
// CHECK:         %[[Q:.*]] = ane.mul %q, %{{.*}} {ane.name = "attn#scale"}
// CHECK-NEXT:    %[[S:.*]] = ane.matmul %[[Q]], %k {ane.name = "attn#scores", transpose_rhs = true}
// CHECK-NEXT:    %[[M:.*]] = ane.add %[[S]], %mask {ane.name = "attn#mask"}
// CHECK-NEXT:    %[[P:.*]] = ane.softmax %[[M]] {ane.name = "attn#softmax", axis = 3 : i64}
// CHECK-NEXT:    %{{.*}} = ane.matmul %[[P]], %v {ane.name = "attn#context"}
// CHECK-NOT:     ane.sdpa
func.func @masked_sdpa(%q: tensor<1x2x8x4xf32>, %k: tensor<1x2x8x4xf32>, %v: tensor<1x2x8x4xf32>, %mask: tensor<1x1x8x8xf32>) -> tensor<1x2x8x4xf32> {
  %o = ane.sdpa %q, %k, %v, %mask {scale = 0.5 : f32, ane.name = "attn"} : (tensor<1x2x8x4xf32>, tensor<1x2x8x4xf32>, tensor<1x2x8x4xf32>, tensor<1x1x8x8xf32>) -> tensor<1x2x8x4xf32>
  func.return %o : tensor<1x2x8x4xf32>
}

// Unmasked attention is legal as it stands.
// CHECK-LABEL: func.func @plain_sdpa
// CHECK:         ane.sdpa
func.func @plain_sdpa(%q: tensor<1x2x8x4xf32>) -> tensor<1x2x8x4xf32> {
  %o = ane.sdpa %q, %q, %q {scale = 0.5 : f32} : (tensor<1x2x8x4xf32>, tensor<1x2x8x4xf32>, tensor<1x2x8x4xf32>) -> tensor<1x2x8x4xf32>
  func.return %o : tensor<1x2x8x4xf32>
}

// A written-out, max-subtracted softmax becomes ane.softmax.
// CHECK-LABEL: func.func @softmax
// CHECK-NEXT:    %{{.*}} = ane.softmax %x {ane.name = "sm/div", axis = 1 : i64} : tensor<2x5xf32>
// CHECK-NEXT:    func.return
func.func @softmax(%x: tensor<2x5xf32>) -> tensor<2x5xf32> {
  %m = ane.reduce_max %x {axes = array<i64: 1>} : (tensor<2x5xf32>) -> tensor<2x1xf32>
  %s = ane.sub %x, %m : (tensor<2x5xf32>, tensor<2x1xf32>) -> tensor<2x5xf32>
  %e = ane.exp %s : tensor<2x5xf32>
  %t = ane.reduce_sum %e {axes = array<i64: 1>} : (tensor<2x5xf32>) -> tensor<2x1xf32>
  %y = ane.div %e, %t {ane.name = "sm/div"} : (tensor<2x5xf32>, tensor<2x1xf32>) -> tensor<2x5xf32>
  func.return %y : tensor<2x5xf32>
}

// A written-out layer norm with its affine becomes ane.layer_norm.
// CHECK-LABEL: func.func @layer_norm
// CHECK:         %{{.*}} = ane.layer_norm %x, %{{.*}}, %{{.*}} {ane.name = "ln/add", epsilon = 1.000000e-05 : f32, axes = array<i64: 2>}
// CHECK-NOT:     ane.reduce_mean
func.func @layer_norm(%x: tensor<1x3x4xf32>) -> tensor<1x3x4xf32> {
  %eps = ane.const dense<1.0e-05> : tensor<1x1x1xf32>
  %g = ane.const dense<[[[1.0, 2.0, 3.0, 4.0]]]> : tensor<1x1x4xf32>
  %b = ane.const dense<[[[0.5, 0.0, -0.5, 1.0]]]> : tensor<1x1x4xf32>
  %m = ane.reduce_mean %x {axes = array<i64: 2>} : (tensor<1x3x4xf32>) -> tensor<1x3x1xf32>
  %d = ane.sub %x, %m : (tensor<1x3x4xf32>, tensor<1x3x1xf32>) -> tensor<1x3x4xf32>
  %sq = ane.mul %d, %d : (tensor<1x3x4xf32>, tensor<1x3x4xf32>) -> tensor<1x3x4xf32>
  %v = ane.reduce_mean %sq {axes = array<i64: 2>} : (tensor<1x3x4xf32>) -> tensor<1x3x1xf32>
  %ve = ane.add %v, %eps : (tensor<1x3x1xf32>, tensor<1x1x1xf32>) -> tensor<1x3x1xf32>
  %r = ane.sqrt %ve : tensor<1x3x1xf32>
  %n = ane.div %d, %r : (tensor<1x3x4xf32>, tensor<1x3x1xf32>) -> tensor<1x3x4xf32>
  %s = ane.mul %n, %g : (tensor<1x3x4xf32>, tensor<1x1x4xf32>) -> tensor<1x3x4xf32>
  %y = ane.add %s, %b {ane.name = "ln/add"} : (tensor<1x3x4xf32>, tensor<1x1x4xf32>) -> tensor<1x3x4xf32>
  func.return %y : tensor<1x3x4xf32>
}

// Reductions keep their axes; more than four reduced axes are reduced in two steps.
// CHECK-LABEL: func.func @reductions
// CHECK:         %[[K:.*]] = ane.reduce_sum %x {ane.name = "r", axes = array<i64: 1>} : (tensor<2x3x4xf32>) -> tensor<2x1x4xf32>
// CHECK-NEXT:    ane.reshape %[[K]] {ane.name = "r#reshape"} : (tensor<2x1x4xf32>) -> tensor<2x4xf32>
// CHECK:         %[[I:.*]] = ane.reduce_max %w {ane.name = "wide#inner", axes = array<i64: 0, 1, 2, 3>}
// CHECK-NEXT:    ane.reduce_max %[[I]] {ane.name = "wide", axes = array<i64: 4>}
func.func @reductions(%x: tensor<2x3x4xf32>, %w: tensor<2x2x2x2x3xf32>) -> (tensor<2x4xf32>, tensor<1x1x1x1x1xf32>) {
  %r = ane.reduce_sum %x {axes = array<i64: 1>, keepdims = false, ane.name = "r"} : (tensor<2x3x4xf32>) -> tensor<2x4xf32>
  %m = ane.reduce_max %w {axes = array<i64: 0, 1, 2, 3, 4>, ane.name = "wide"} : (tensor<2x2x2x2x3xf32>) -> tensor<1x1x1x1x1xf32>
  func.return %r, %m : tensor<2x4xf32>, tensor<1x1x1x1x1xf32>
}

// Channel padding becomes a concat with a broadcast fill; H/W padding stays a pad.
// CHECK-LABEL: func.func @pad_channels
// CHECK:         %[[F:.*]] = ane.broadcast %{{.*}} {ane.name = "p#fill"} : (tensor<1x1x1x1xf32>) -> tensor<1x2x3x3xf32>
// CHECK:         %[[C:.*]] = ane.concat %{{.*}}, %x, %{{.*}} {ane.name = "p#concat", axis = 1 : i64}
// CHECK-NEXT:    ane.pad %[[C]] {ane.name = "p", pads = array<i64: 0, 0, 0, 0, 0, 0, 0, 1>}
func.func @pad_channels(%x: tensor<1x2x3x3xf32>) -> tensor<1x5x3x4xf32> {
  %p = ane.pad %x {pads = array<i64: 0, 2, 0, 0, 0, 1, 0, 1>, ane.name = "p"} : (tensor<1x2x3x3xf32>) -> tensor<1x5x3x4xf32>
  func.return %p : tensor<1x5x3x4xf32>
}

// A rounded float cast to int32 and back, through a reshape, is the float reshaped; a float that may
// have a fraction keeps its casts (the int32 cast truncates it), and so does a round trip through int8
// (it saturates).
// CHECK-LABEL: func.func @integer_round_trips
// CHECK:         %[[R:.*]] = ane.round %x {ane.name = "r"} : tensor<2x3xf32>
// CHECK-NEXT:    %[[RR:.*]] = ane.reshape %[[R]] {ane.name = "back#reshape"} : (tensor<2x3xf32>) -> tensor<6xf32>
// CHECK-NEXT:    %[[T:.*]] = ane.cast %x {ane.name = "trunc"} : (tensor<2x3xf32>) -> tensor<2x3xi32>
// CHECK-NEXT:    ane.cast %[[T]] {ane.name = "trunc_back"} : (tensor<2x3xi32>) -> tensor<2x3xf32>
// CHECK-NEXT:    %[[S:.*]] = ane.cast %[[R]] {ane.name = "narrow"} : (tensor<2x3xf32>) -> tensor<2x3xi8>
// CHECK-NEXT:    ane.cast %[[S]] {ane.name = "narrow_back"} : (tensor<2x3xi8>) -> tensor<2x3xf32>
func.func @integer_round_trips(%x: tensor<2x3xf32>) -> (tensor<6xf32>, tensor<2x3xf32>, tensor<2x3xf32>) {
  %r = ane.round %x {ane.name = "r"} : tensor<2x3xf32>
  %i = ane.cast %r {ane.name = "to_int"} : (tensor<2x3xf32>) -> tensor<2x3xi32>
  %f = ane.reshape %i {ane.name = "flat"} : (tensor<2x3xi32>) -> tensor<6xi32>
  %b = ane.cast %f {ane.name = "back"} : (tensor<6xi32>) -> tensor<6xf32>
  %t = ane.cast %x {ane.name = "trunc"} : (tensor<2x3xf32>) -> tensor<2x3xi32>
  %tb = ane.cast %t {ane.name = "trunc_back"} : (tensor<2x3xi32>) -> tensor<2x3xf32>
  %n = ane.cast %r {ane.name = "narrow"} : (tensor<2x3xf32>) -> tensor<2x3xi8>
  %nb = ane.cast %n {ane.name = "narrow_back"} : (tensor<2x3xi8>) -> tensor<2x3xf32>
  func.return %b, %tb, %nb : tensor<6xf32>, tensor<2x3xf32>, tensor<2x3xf32>
}
