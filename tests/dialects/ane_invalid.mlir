// Every `ane` op (and `host.op`) rejects malformed IR with a message that says what is wrong.
// Cases are in generic form so they reach the verifier rather than stopping in the parser.
// RUN: anec opt %s --split-input-file --verify-diagnostics | filecheck %s

func.func @const_none() {
  %0 = "ane.const"() : () -> tensor<2xf32>
  func.return
}
// CHECK: ane.const needs exactly one of a weight handle or an inline value

// -----

func.func @const_both() {
  %0 = "ane.const"() <{handle = "w", value = dense<1.0> : tensor<2xf32>}> : () -> tensor<2xf32>
  func.return
}
// CHECK: ane.const needs exactly one of a weight handle or an inline value

// -----

func.func @const_type() {
  %0 = "ane.const"() <{value = dense<1.0> : tensor<3xf32>}> : () -> tensor<2xf32>
  func.return
}
// CHECK: ane.const value type tensor<3xf32> differs from result type tensor<2xf32>

// -----

func.func @const_not_tensor() {
  %0 = "ane.const"() <{handle = "w"}> : () -> f32
  func.return
}
// CHECK: result 'result' at position 0 does not verify:
// CHECK-NEXT: f32 should be of base attribute tensor

// -----

func.func @relu_int(%x: tensor<2x3xi32>) {
  %0 = "ane.relu"(%x) : (tensor<2x3xi32>) -> tensor<2x3xi32>
  func.return
}
// CHECK: ane.relu needs float tensors, got tensor<2x3xi32>

// -----

func.func @relu_shape(%x: tensor<2x3xf32>) {
  %0 = "ane.relu"(%x) : (tensor<2x3xf32>) -> tensor<2x4xf32>
  func.return
}
// CHECK: result 'result' at position 0 does not verify:
// CHECK-NEXT: attribute tensor<2x3xf32> expected from variable 'T', but got tensor<2x4xf32>

// -----

func.func @sigmoid_int(%x: tensor<4xi8>) {
  %0 = "ane.sigmoid"(%x) : (tensor<4xi8>) -> tensor<4xi8>
  func.return
}
// CHECK: ane.sigmoid needs float tensors, got tensor<4xi8>

// -----

func.func @tanh_bool(%x: tensor<4xi1>) {
  %0 = "ane.tanh"(%x) : (tensor<4xi1>) -> tensor<4xi1>
  func.return
}
// CHECK: ane.tanh needs float tensors, got tensor<4xi1>

// -----

func.func @gelu_mode(%x: tensor<4xf32>) {
  %0 = "ane.gelu"(%x) <{approximate = "fast"}> : (tensor<4xf32>) -> tensor<4xf32>
  func.return
}
// CHECK: ane.gelu: approximate must be none or tanh, got 'fast'

// -----

func.func @silu_int(%x: tensor<4xi32>) {
  %0 = "ane.silu"(%x) : (tensor<4xi32>) -> tensor<4xi32>
  func.return
}
// CHECK: ane.silu needs float tensors, got tensor<4xi32>

// -----

func.func @exp_int(%x: tensor<4xi32>) {
  %0 = "ane.exp"(%x) : (tensor<4xi32>) -> tensor<4xi32>
  func.return
}
// CHECK: ane.exp needs float tensors, got tensor<4xi32>

// -----

func.func @log_int(%x: tensor<4xi64>) {
  %0 = "ane.log"(%x) : (tensor<4xi64>) -> tensor<4xi64>
  func.return
}
// CHECK: ane.log needs float tensors, got tensor<4xi64>

// -----

func.func @sqrt_int(%x: tensor<4xi32>) {
  %0 = "ane.sqrt"(%x) : (tensor<4xi32>) -> tensor<4xi32>
  func.return
}
// CHECK: ane.sqrt needs float tensors, got tensor<4xi32>

// -----

func.func @rsqrt_int(%x: tensor<4xi32>) {
  %0 = "ane.rsqrt"(%x) : (tensor<4xi32>) -> tensor<4xi32>
  func.return
}
// CHECK: ane.rsqrt needs float tensors, got tensor<4xi32>

// -----

func.func @reciprocal_int(%x: tensor<4xi32>) {
  %0 = "ane.reciprocal"(%x) : (tensor<4xi32>) -> tensor<4xi32>
  func.return
}
// CHECK: ane.reciprocal needs float tensors, got tensor<4xi32>

// -----

func.func @abs_bool(%x: tensor<4xi1>) {
  %0 = "ane.abs"(%x) : (tensor<4xi1>) -> tensor<4xi1>
  func.return
}
// CHECK: ane.abs needs numeric tensors, got tensor<4xi1>

// -----

func.func @neg_bool(%x: tensor<4xi1>) {
  %0 = "ane.neg"(%x) : (tensor<4xi1>) -> tensor<4xi1>
  func.return
}
// CHECK: ane.neg needs numeric tensors, got tensor<4xi1>

// -----

func.func @leaky_no_alpha(%x: tensor<4xf32>) {
  %0 = "ane.leaky_relu"(%x) : (tensor<4xf32>) -> tensor<4xf32>
  func.return
}
// CHECK: property 'alpha' expected in operation 'ane.leaky_relu'

// -----

func.func @clamp_int_bound(%x: tensor<4xf32>) {
  %0 = "ane.clamp"(%x) <{min = 0 : i64, max = 6.0 : f32}> : (tensor<4xf32>) -> tensor<4xf32>
  func.return
}
// CHECK: 0 : i64 should be of base attribute float

// -----

func.func @elu_int(%x: tensor<4xi32>) {
  %0 = "ane.elu"(%x) <{alpha = 1.0 : f32}> : (tensor<4xi32>) -> tensor<4xi32>
  func.return
}
// CHECK: ane.elu needs float tensors, got tensor<4xi32>

// -----

func.func @softplus_int(%x: tensor<4xi32>) {
  %0 = "ane.softplus"(%x) : (tensor<4xi32>) -> tensor<4xi32>
  func.return
}
// CHECK: ane.softplus needs float tensors, got tensor<4xi32>

// -----

func.func @hardswish_int(%x: tensor<4xi32>) {
  %0 = "ane.hardswish"(%x) : (tensor<4xi32>) -> tensor<4xi32>
  func.return
}
// CHECK: ane.hardswish needs float tensors, got tensor<4xi32>

// -----

func.func @hardsigmoid_no_beta(%x: tensor<4xf32>) {
  %0 = "ane.hardsigmoid"(%x) <{alpha = 0.2 : f32}> : (tensor<4xf32>) -> tensor<4xf32>
  func.return
}
// CHECK: property 'beta' expected in operation 'ane.hardsigmoid'

// -----

func.func @erf_int(%x: tensor<4xi32>) {
  %0 = "ane.erf"(%x) : (tensor<4xi32>) -> tensor<4xi32>
  func.return
}
// CHECK: ane.erf needs float tensors, got tensor<4xi32>

// -----

func.func @sin_int(%x: tensor<4xi32>) {
  %0 = "ane.sin"(%x) : (tensor<4xi32>) -> tensor<4xi32>
  func.return
}
// CHECK: ane.sin needs float tensors, got tensor<4xi32>

// -----

func.func @cos_int(%x: tensor<4xi32>) {
  %0 = "ane.cos"(%x) : (tensor<4xi32>) -> tensor<4xi32>
  func.return
}
// CHECK: ane.cos needs float tensors, got tensor<4xi32>

// -----

func.func @sign_int(%x: tensor<4xi32>) {
  %0 = "ane.sign"(%x) : (tensor<4xi32>) -> tensor<4xi32>
  func.return
}
// CHECK: ane.sign needs float tensors, got tensor<4xi32>

// -----

func.func @round_int(%x: tensor<4xi32>) {
  %0 = "ane.round"(%x) : (tensor<4xi32>) -> tensor<4xi32>
  func.return
}
// CHECK: ane.round needs float tensors, got tensor<4xi32>

// -----

func.func @floor_int(%x: tensor<4xi32>) {
  %0 = "ane.floor"(%x) : (tensor<4xi32>) -> tensor<4xi32>
  func.return
}
// CHECK: ane.floor needs float tensors, got tensor<4xi32>

// -----

func.func @ceil_int(%x: tensor<4xi32>) {
  %0 = "ane.ceil"(%x) : (tensor<4xi32>) -> tensor<4xi32>
  func.return
}
// CHECK: ane.ceil needs float tensors, got tensor<4xi32>

// -----

func.func @softmax_axis(%x: tensor<2x3xf32>) {
  %0 = "ane.softmax"(%x) <{axis = 2 : i64}> : (tensor<2x3xf32>) -> tensor<2x3xf32>
  func.return
}
// CHECK: ane.softmax: axis 2 out of range for rank 2

// -----

func.func @add_rank(%a: tensor<2x3xf32>, %b: tensor<3xf32>) {
  %0 = "ane.add"(%a, %b) : (tensor<2x3xf32>, tensor<3xf32>) -> tensor<2x3xf32>
  func.return
}
// CHECK: ane.add: broadcast needs operands of equal rank, got shapes [[2, 3], [3]]

// -----

func.func @sub_broadcast(%a: tensor<2x3xf32>, %b: tensor<2x4xf32>) {
  %0 = "ane.sub"(%a, %b) : (tensor<2x3xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
  func.return
}
// CHECK: ane.sub: shapes [[2, 3], [2, 4]] do not broadcast

// -----

func.func @mul_types(%a: tensor<2x3xf32>, %b: tensor<2x3xf16>) {
  %0 = "ane.mul"(%a, %b) : (tensor<2x3xf32>, tensor<2x3xf16>) -> tensor<2x3xf32>
  func.return
}
// CHECK: ane.mul operands and result must share an element type, got ['f16', 'f32']

// -----

func.func @div_bool(%a: tensor<2xi1>) {
  %0 = "ane.div"(%a, %a) : (tensor<2xi1>, tensor<2xi1>) -> tensor<2xi1>
  func.return
}
// CHECK: ane.div needs numeric tensors, got tensor<2xi1>

// -----

func.func @max_result(%a: tensor<2x1xf32>, %b: tensor<1x3xf32>) {
  %0 = "ane.max"(%a, %b) : (tensor<2x1xf32>, tensor<1x3xf32>) -> tensor<2x1xf32>
  func.return
}
// CHECK: ane.max: result shape [2, 1] does not match the expected [2, 3]

// -----

func.func @min_result_type(%a: tensor<2xf32>) {
  %0 = "ane.min"(%a, %a) : (tensor<2xf32>, tensor<2xf32>) -> tensor<2xf16>
  func.return
}
// CHECK: ane.min operands and result must share an element type, got ['f16', 'f32']

// -----

func.func @pow_types(%a: tensor<2xf32>, %b: tensor<2xi32>) {
  %0 = "ane.pow"(%a, %b) : (tensor<2xf32>, tensor<2xi32>) -> tensor<2xf32>
  func.return
}
// CHECK: ane.pow operands and result must share an element type, got ['f32', 'i32']

// -----

func.func @equal_result(%a: tensor<2xf32>) {
  %0 = "ane.equal"(%a, %a) : (tensor<2xf32>, tensor<2xf32>) -> tensor<2xf32>
  func.return
}
// CHECK: ane.equal produces an i1 tensor

// -----

func.func @not_equal_types(%a: tensor<2xf32>, %b: tensor<2xi32>) {
  %0 = "ane.not_equal"(%a, %b) : (tensor<2xf32>, tensor<2xi32>) -> tensor<2xi1>
  func.return
}
// CHECK: ane.not_equal operands and result must share an element type, got ['f32', 'i32']

// -----

func.func @greater_broadcast(%a: tensor<2xf32>, %b: tensor<3xf32>) {
  %0 = "ane.greater"(%a, %b) : (tensor<2xf32>, tensor<3xf32>) -> tensor<3xi1>
  func.return
}
// CHECK: ane.greater: shapes [[2], [3]] do not broadcast

// -----

func.func @greater_equal_result(%a: tensor<2xf32>) {
  %0 = "ane.greater_equal"(%a, %a) : (tensor<2xf32>, tensor<2xf32>) -> tensor<2xi8>
  func.return
}
// CHECK: ane.greater_equal produces an i1 tensor

// -----

func.func @less_shape(%a: tensor<2xf32>) {
  %0 = "ane.less"(%a, %a) : (tensor<2xf32>, tensor<2xf32>) -> tensor<4xi1>
  func.return
}
// CHECK: ane.less: result shape [4] does not match the expected [2]

// -----

func.func @less_equal_rank(%a: tensor<2xf32>, %b: tensor<1x2xf32>) {
  %0 = "ane.less_equal"(%a, %b) : (tensor<2xf32>, tensor<1x2xf32>) -> tensor<1x2xi1>
  func.return
}
// CHECK: ane.less_equal: broadcast needs operands of equal rank, got shapes [[2], [1, 2]]

// -----

func.func @select_cond(%c: tensor<2xf32>, %a: tensor<2xf32>) {
  %0 = "ane.select"(%c, %a, %a) : (tensor<2xf32>, tensor<2xf32>, tensor<2xf32>) -> tensor<2xf32>
  func.return
}
// CHECK: ane.select: the condition must be an i1 tensor

// -----

func.func @select_branches(%c: tensor<2xi1>, %a: tensor<2xf32>, %b: tensor<2xf16>) {
  %0 = "ane.select"(%c, %a, %b) : (tensor<2xi1>, tensor<2xf32>, tensor<2xf16>) -> tensor<2xf32>
  func.return
}
// CHECK: ane.select operands and result must share an element type, got ['f16', 'f32']

// -----

func.func @conv_channels(%x: tensor<1x4x8x8xf32>, %w: tensor<6x3x3x3xf32>) {
  %0 = "ane.conv"(%x, %w) <{strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64}> : (tensor<1x4x8x8xf32>, tensor<6x3x3x3xf32>) -> tensor<1x6x6x6xf32>
  func.return
}
// CHECK: ane.conv: input has 4 channels, the weight takes 3 per group x 1 groups

// -----

func.func @conv_groups_out(%x: tensor<1x4x8x8xf32>, %w: tensor<5x2x3x3xf32>) {
  %0 = "ane.conv"(%x, %w) <{strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 2 : i64}> : (tensor<1x4x8x8xf32>, tensor<5x2x3x3xf32>) -> tensor<1x5x6x6xf32>
  func.return
}
// CHECK: ane.conv: 5 output channels are not divisible by 2 groups

// -----

func.func @conv_strides_count(%x: tensor<1x4x8x8xf32>, %w: tensor<6x4x3x3xf32>) {
  %0 = "ane.conv"(%x, %w) <{strides = array<i64: 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64}> : (tensor<1x4x8x8xf32>, tensor<6x4x3x3xf32>) -> tensor<1x6x6x6xf32>
  func.return
}
// CHECK: ane.conv: strides needs 2 values, got 1

// -----

func.func @conv_rank(%x: tensor<1x4x2x8x8xf32>, %w: tensor<6x4x1x3x3xf32>) {
  %0 = "ane.conv"(%x, %w) <{strides = array<i64: 1, 1, 1>, pads = array<i64: 0, 0, 0, 0, 0, 0>, dilations = array<i64: 1, 1, 1>, groups = 1 : i64}> : (tensor<1x4x2x8x8xf32>, tensor<6x4x1x3x3xf32>) -> tensor<1x6x2x6x6xf32>
  func.return
}
// CHECK: ane.conv supports 1-D and 2-D inputs (rank 3 or 4), got rank 5

// -----

func.func @conv_fit(%x: tensor<1x4x2x2xf32>, %w: tensor<6x4x3x3xf32>) {
  %0 = "ane.conv"(%x, %w) <{strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64}> : (tensor<1x4x2x2xf32>, tensor<6x4x3x3xf32>) -> tensor<1x6x0x0xf32>
  func.return
}
// CHECK: ane.conv: the kernel does not fit the padded input (output [1, 6, 0, 0])

// -----

func.func @conv_result(%x: tensor<1x4x8x8xf32>, %w: tensor<6x4x3x3xf32>) {
  %0 = "ane.conv"(%x, %w) <{strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64}> : (tensor<1x4x8x8xf32>, tensor<6x4x3x3xf32>) -> tensor<1x6x6x6xf32>
  func.return
}
// CHECK: ane.conv: result shape [1, 6, 6, 6] does not match the expected [1, 6, 8, 8]

// -----

func.func @conv_dilation(%x: tensor<1x4x8x8xf32>, %w: tensor<6x4x3x3xf32>) {
  %0 = "ane.conv"(%x, %w) <{strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 0, 1>, groups = 1 : i64}> : (tensor<1x4x8x8xf32>, tensor<6x4x3x3xf32>) -> tensor<1x6x6x6xf32>
  func.return
}
// CHECK: ane.conv: strides and dilations must be >= 1

// -----

func.func @conv_bias(%x: tensor<1x4x8x8xf32>, %w: tensor<6x4x3x3xf32>, %b: tensor<4xf32>) {
  %0 = "ane.conv"(%x, %w, %b) <{strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64}> : (tensor<1x4x8x8xf32>, tensor<6x4x3x3xf32>, tensor<4xf32>) -> tensor<1x6x6x6xf32>
  func.return
}
// CHECK: ane.conv: bias must have shape [6], got [4]

// -----

func.func @conv_activation(%x: tensor<1x4x8x8xf32>, %w: tensor<6x4x3x3xf32>) {
  %0 = "ane.conv"(%x, %w) <{strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64, activation = "swish"}> : (tensor<1x4x8x8xf32>, tensor<6x4x3x3xf32>) -> tensor<1x6x6x6xf32>
  func.return
}
// CHECK: ane.conv: unknown activation 'swish'

// -----

func.func @conv_activation_params(%x: tensor<1x4x8x8xf32>, %w: tensor<6x4x3x3xf32>) {
  %0 = "ane.conv"(%x, %w) <{strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64, activation = "clamp", activation_params = array<f32: 0.0>}> : (tensor<1x4x8x8xf32>, tensor<6x4x3x3xf32>) -> tensor<1x6x6x6xf32>
  func.return
}
// CHECK: ane.conv: activation clamp takes 2 parameters, got 1

// -----

func.func @conv_int(%x: tensor<1x4x8x8xi32>, %w: tensor<6x4x3x3xi32>) {
  %0 = "ane.conv"(%x, %w) <{strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64}> : (tensor<1x4x8x8xi32>, tensor<6x4x3x3xi32>) -> tensor<1x6x6x6xi32>
  func.return
}
// CHECK: ane.conv needs float tensors, got tensor<1x4x8x8xi32>

// -----

func.func @conv_transpose_channels(%x: tensor<1x4x8x8xf32>, %w: tensor<3x3x2x2xf32>) {
  %0 = "ane.conv_transpose"(%x, %w) <{strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64, output_padding = array<i64: 0, 0>}> : (tensor<1x4x8x8xf32>, tensor<3x3x2x2xf32>) -> tensor<1x3x9x9xf32>
  func.return
}
// CHECK: ane.conv_transpose: input has 4 channels, weight expects 3

// -----

func.func @conv_transpose_output_padding(%x: tensor<1x4x8x8xf32>, %w: tensor<4x3x2x2xf32>) {
  %0 = "ane.conv_transpose"(%x, %w) <{strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64, output_padding = array<i64: 0>}> : (tensor<1x4x8x8xf32>, tensor<4x3x2x2xf32>) -> tensor<1x3x9x9xf32>
  func.return
}
// CHECK: ane.conv_transpose: output_padding needs 2 values

// -----

func.func @conv_transpose_groups(%x: tensor<1x4x8x8xf32>, %w: tensor<4x3x2x2xf32>) {
  %0 = "ane.conv_transpose"(%x, %w) <{strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 3 : i64, output_padding = array<i64: 0, 0>}> : (tensor<1x4x8x8xf32>, tensor<4x3x2x2xf32>) -> tensor<1x9x9x9xf32>
  func.return
}
// CHECK: ane.conv_transpose: 4 input channels are not divisible by 3 groups

// -----

func.func @conv_transpose_result(%x: tensor<1x4x8x8xf32>, %w: tensor<4x3x2x2xf32>) {
  %0 = "ane.conv_transpose"(%x, %w) <{strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64, output_padding = array<i64: 0, 0>}> : (tensor<1x4x8x8xf32>, tensor<4x3x2x2xf32>) -> tensor<1x3x9x9xf32>
  func.return
}
// CHECK: ane.conv_transpose: result shape [1, 3, 9, 9] does not match the expected [1, 3, 16, 16]

// -----

func.func @matmul_contraction(%a: tensor<2x3xf32>, %b: tensor<4x5xf32>) {
  %0 = "ane.matmul"(%a, %b) : (tensor<2x3xf32>, tensor<4x5xf32>) -> tensor<2x5xf32>
  func.return
}
// CHECK: ane.matmul: contraction sizes differ (3 vs 4)

// -----

func.func @matmul_rank(%a: tensor<2x3xf32>, %b: tensor<1x3x5xf32>) {
  %0 = "ane.matmul"(%a, %b) : (tensor<2x3xf32>, tensor<1x3x5xf32>) -> tensor<1x2x5xf32>
  func.return
}
// CHECK: ane.matmul needs operands of equal rank >= 2, got [2, 3] and [1, 3, 5]

// -----

func.func @matmul_bias(%a: tensor<2x3xf32>, %b: tensor<3x5xf32>, %c: tensor<2xf32>) {
  %0 = "ane.matmul"(%a, %b, %c) : (tensor<2x3xf32>, tensor<3x5xf32>, tensor<2xf32>) -> tensor<2x5xf32>
  func.return
}
// CHECK: ane.matmul: bias must have shape [5], got [2]

// -----

func.func @matmul_transpose(%a: tensor<2x3xf32>, %b: tensor<3x5xf32>) {
  %0 = "ane.matmul"(%a, %b) <{transpose_rhs = true}> : (tensor<2x3xf32>, tensor<3x5xf32>) -> tensor<2x3xf32>
  func.return
}
// CHECK: ane.matmul: contraction sizes differ (3 vs 5)

// -----

func.func @sdpa_depth(%q: tensor<1x5x8xf32>, %k: tensor<1x7x4xf32>, %v: tensor<1x7x4xf32>) {
  %0 = "ane.sdpa"(%q, %k, %v) <{scale = 1.0 : f32}> : (tensor<1x5x8xf32>, tensor<1x7x4xf32>, tensor<1x7x4xf32>) -> tensor<1x5x4xf32>
  func.return
}
// CHECK: ane.sdpa: query depth 8 differs from key depth 4

// -----

func.func @sdpa_length(%q: tensor<1x5x8xf32>, %k: tensor<1x7x8xf32>, %v: tensor<1x6x4xf32>) {
  %0 = "ane.sdpa"(%q, %k, %v) <{scale = 1.0 : f32}> : (tensor<1x5x8xf32>, tensor<1x7x8xf32>, tensor<1x6x4xf32>) -> tensor<1x5x4xf32>
  func.return
}
// CHECK: ane.sdpa: key length 7 differs from value length 6

// -----

func.func @sdpa_mask(%q: tensor<1x5x8xf32>, %k: tensor<1x7x8xf32>, %v: tensor<1x7x4xf32>, %m: tensor<1x5x6xf32>) {
  %0 = "ane.sdpa"(%q, %k, %v, %m) <{scale = 1.0 : f32}> : (tensor<1x5x8xf32>, tensor<1x7x8xf32>, tensor<1x7x4xf32>, tensor<1x5x6xf32>) -> tensor<1x5x4xf32>
  func.return
}
// CHECK: ane.sdpa: mask [1, 5, 6] does not broadcast to the scores [1, 5, 7]

// -----

func.func @sdpa_batch(%q: tensor<2x5x8xf32>, %k: tensor<1x7x8xf32>, %v: tensor<1x7x4xf32>) {
  %0 = "ane.sdpa"(%q, %k, %v) <{scale = 1.0 : f32}> : (tensor<2x5x8xf32>, tensor<1x7x8xf32>, tensor<1x7x4xf32>) -> tensor<2x5x4xf32>
  func.return
}
// CHECK: ane.sdpa: batch and head axes must match

// -----

func.func @sdpa_no_scale(%q: tensor<1x5x8xf32>) {
  %0 = "ane.sdpa"(%q, %q, %q) : (tensor<1x5x8xf32>, tensor<1x5x8xf32>, tensor<1x5x8xf32>) -> tensor<1x5x8xf32>
  func.return
}
// CHECK: property 'scale' expected in operation 'ane.sdpa'

// -----

func.func @reduce_sum_axis(%x: tensor<2x3xf32>) {
  %0 = "ane.reduce_sum"(%x) <{axes = array<i64: 2>}> : (tensor<2x3xf32>) -> tensor<2x3xf32>
  func.return
}
// CHECK: ane.reduce_sum: axis 2 out of range for rank 2

// -----

func.func @reduce_mean_repeated(%x: tensor<2x3xf32>) {
  %0 = "ane.reduce_mean"(%x) <{axes = array<i64: 1, 1>}> : (tensor<2x3xf32>) -> tensor<2x1xf32>
  func.return
}
// CHECK: ane.reduce_mean: repeated axis in [1, 1]

// -----

func.func @reduce_max_keepdims(%x: tensor<2x3xf32>) {
  %0 = "ane.reduce_max"(%x) <{axes = array<i64: 1>, keepdims = false}> : (tensor<2x3xf32>) -> tensor<2x1xf32>
  func.return
}
// CHECK: ane.reduce_max: result shape [2, 1] does not match the expected [2]

// -----

func.func @reduce_min_bool(%x: tensor<2x3xi1>) {
  %0 = "ane.reduce_min"(%x) <{axes = array<i64: 1>}> : (tensor<2x3xi1>) -> tensor<2x1xi1>
  func.return
}
// CHECK: ane.reduce_min needs numeric tensors, got tensor<2x3xi1>

// -----

func.func @reduce_l2_type(%x: tensor<2x3xf32>) {
  %0 = "ane.reduce_l2"(%x) <{axes = array<i64: 1>}> : (tensor<2x3xf32>) -> tensor<2x1xf16>
  func.return
}
// CHECK: ane.reduce_l2 operands and result must share an element type, got ['f16', 'f32']

// -----

func.func @reduce_logsumexp_negative(%x: tensor<2x3xf32>) {
  %0 = "ane.reduce_logsumexp"(%x) <{axes = array<i64: -1>}> : (tensor<2x3xf32>) -> tensor<2x1xf32>
  func.return
}
// CHECK: ane.reduce_logsumexp: axis -1 out of range for rank 2

// -----

func.func @argmax_float(%x: tensor<2x3xf32>) {
  %0 = "ane.argmax"(%x) <{axis = 1 : i64}> : (tensor<2x3xf32>) -> tensor<2x1xf32>
  func.return
}
// CHECK: ane.argmax produces i32 or i64 indices, got f32

// -----

func.func @topk_k_too_large(%x: tensor<2x3xf32>) {
  %0, %1 = "ane.topk"(%x) <{k = 4 : i64, axis = 1 : i64}> : (tensor<2x3xf32>) -> (tensor<2x4xf32>, tensor<2x4xi32>)
  func.return
}
// CHECK: ane.topk: k = 4 is not within 1..3, the extent of axis 1

// -----

func.func @topk_float_indices(%x: tensor<2x3xf32>) {
  %0, %1 = "ane.topk"(%x) <{k = 2 : i64, axis = 1 : i64}> : (tensor<2x3xf32>) -> (tensor<2x2xf32>, tensor<2x2xf32>)
  func.return
}
// CHECK: ane.topk produces i32 or i64 indices, got f32

// -----

func.func @topk_values_shape(%x: tensor<2x3xf32>) {
  %0, %1 = "ane.topk"(%x) <{k = 2 : i64, axis = 1 : i64}> : (tensor<2x3xf32>) -> (tensor<2x3xf32>, tensor<2x2xi32>)
  func.return
}
// CHECK: ane.topk: result shape [2, 3] does not match the expected [2, 2]

// -----

func.func @argmin_axis(%x: tensor<2x3xf32>) {
  %0 = "ane.argmin"(%x) <{axis = 2 : i64}> : (tensor<2x3xf32>) -> tensor<2x3xi32>
  func.return
}
// CHECK: ane.argmin: axis 2 out of range for rank 2

// -----

func.func @max_pool_pad(%x: tensor<1x3x8x8xf32>) {
  %0 = "ane.max_pool"(%x) <{kernel = array<i64: 2, 2>, strides = array<i64: 1, 1>, pads = array<i64: 2, 0, 0, 0>}> : (tensor<1x3x8x8xf32>) -> tensor<1x3x9x7xf32>
  func.return
}
// CHECK: ane.max_pool: pads must be smaller than the kernel

// -----

func.func @avg_pool_kernel_rank(%x: tensor<1x3x8x8xf32>) {
  %0 = "ane.avg_pool"(%x) <{kernel = array<i64: 2>, strides = array<i64: 1>, pads = array<i64: 0, 0>}> : (tensor<1x3x8x8xf32>) -> tensor<1x3x8x7xf32>
  func.return
}
// CHECK: ane.avg_pool: needs an NC(H)W input and one kernel size per spatial axis

// -----

func.func @l2_pool_fit(%x: tensor<1x3x2x2xf32>) {
  %0 = "ane.l2_pool"(%x) <{kernel = array<i64: 3, 3>, strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>}> : (tensor<1x3x2x2xf32>) -> tensor<1x3x0x0xf32>
  func.return
}
// CHECK: ane.l2_pool: the window does not fit the input

// -----

func.func @max_pool_result(%x: tensor<1x3x8x8xf32>) {
  %0 = "ane.max_pool"(%x) <{kernel = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>}> : (tensor<1x3x8x8xf32>) -> tensor<1x3x8x8xf32>
  func.return
}
// CHECK: ane.max_pool: result shape [1, 3, 8, 8] does not match the expected [1, 3, 4, 4]

// -----

func.func @avg_pool_int(%x: tensor<1x3x8x8xi32>) {
  %0 = "ane.avg_pool"(%x) <{kernel = array<i64: 2, 2>, strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>}> : (tensor<1x3x8x8xi32>) -> tensor<1x3x4x4xi32>
  func.return
}
// CHECK: ane.avg_pool needs float tensors, got tensor<1x3x8x8xi32>

// -----

func.func @global_avg_pool_rank(%x: tensor<3x8xf32>) {
  %0 = "ane.global_avg_pool"(%x) : (tensor<3x8xf32>) -> tensor<3x1xf32>
  func.return
}
// CHECK: ane.global_avg_pool: needs an NC(H)W input

// -----

func.func @global_max_pool_result(%x: tensor<1x3x8x8xf32>) {
  %0 = "ane.global_max_pool"(%x) : (tensor<1x3x8x8xf32>) -> tensor<1x3x1xf32>
  func.return
}
// CHECK: ane.global_max_pool: result shape [1, 3, 1] does not match the expected [1, 3, 1, 1]

// -----

func.func @layer_norm_scale(%x: tensor<2x5xf32>, %s: tensor<2xf32>) {
  %0 = "ane.layer_norm"(%x, %s, %s) <{axes = array<i64: 1>, epsilon = 1.0e-05 : f32}> : (tensor<2x5xf32>, tensor<2xf32>, tensor<2xf32>) -> tensor<2x5xf32>
  func.return
}
// CHECK: ane.layer_norm: scale must have shape [5], got [2]

// -----

func.func @layer_norm_epsilon(%x: tensor<2x5xf32>, %s: tensor<5xf32>) {
  %0 = "ane.layer_norm"(%x, %s, %s) <{axes = array<i64: 1>, epsilon = -1.0 : f32}> : (tensor<2x5xf32>, tensor<5xf32>, tensor<5xf32>) -> tensor<2x5xf32>
  func.return
}
// CHECK: ane.layer_norm: epsilon must be >= 0

// -----

func.func @instance_norm_rank(%x: tensor<2x5xf32>, %s: tensor<5xf32>) {
  %0 = "ane.instance_norm"(%x, %s, %s) <{epsilon = 1.0e-05 : f32}> : (tensor<2x5xf32>, tensor<5xf32>, tensor<5xf32>) -> tensor<2x5xf32>
  func.return
}
// CHECK: ane.instance_norm needs an NC(H)W input

// -----

func.func @group_norm_groups(%x: tensor<1x6x4x4xf32>, %s: tensor<6xf32>) {
  %0 = "ane.group_norm"(%x, %s, %s) <{num_groups = 4 : i64, epsilon = 1.0e-05 : f32}> : (tensor<1x6x4x4xf32>, tensor<6xf32>, tensor<6xf32>) -> tensor<1x6x4x4xf32>
  func.return
}
// CHECK: ane.group_norm: 6 channels are not divisible by 4 groups

// -----

func.func @group_norm_int(%x: tensor<1x6x4x4xi32>, %s: tensor<6xi32>) {
  %0 = "ane.group_norm"(%x, %s, %s) <{num_groups = 2 : i64, epsilon = 1.0e-05 : f32}> : (tensor<1x6x4x4xi32>, tensor<6xi32>, tensor<6xi32>) -> tensor<1x6x4x4xi32>
  func.return
}
// CHECK: ane.group_norm needs float tensors, got tensor<1x6x4x4xi32>

// -----

func.func @l2_norm_axis(%x: tensor<2x5xf32>) {
  %0 = "ane.l2_norm"(%x) <{axes = array<i64: 3>, epsilon = 1.0e-12 : f32}> : (tensor<2x5xf32>) -> tensor<2x5xf32>
  func.return
}
// CHECK: ane.l2_norm: axis 3 out of range for rank 2

// -----

func.func @reshape_count(%x: tensor<2x5xf32>) {
  %0 = "ane.reshape"(%x) : (tensor<2x5xf32>) -> tensor<11xf32>
  func.return
}
// CHECK: ane.reshape: [2, 5] and [11] hold different element counts

// -----

func.func @reshape_type(%x: tensor<2x5xf32>) {
  %0 = "ane.reshape"(%x) : (tensor<2x5xf32>) -> tensor<10xf16>
  func.return
}
// CHECK: ane.reshape operands and result must share an element type, got ['f16', 'f32']

// -----

func.func @transpose_perm(%x: tensor<2x5x3xf32>) {
  %0 = "ane.transpose"(%x) <{perm = array<i64: 0, 2, 2>}> : (tensor<2x5x3xf32>) -> tensor<2x3x3xf32>
  func.return
}
// CHECK: ane.transpose: [0, 2, 2] is not a permutation of 3 axes

// -----

func.func @transpose_result(%x: tensor<2x5x3xf32>) {
  %0 = "ane.transpose"(%x) <{perm = array<i64: 0, 2, 1>}> : (tensor<2x5x3xf32>) -> tensor<2x5x3xf32>
  func.return
}
// CHECK: ane.transpose: result shape [2, 5, 3] does not match the expected [2, 3, 5]

// -----

func.func @slice_bounds(%x: tensor<4x6xf32>) {
  %0 = "ane.slice"(%x) <{starts = array<i64: 5, 0>, ends = array<i64: 6, 6>, steps = array<i64: 1, 1>}> : (tensor<4x6xf32>) -> tensor<0x6xf32>
  func.return
}
// CHECK: ane.slice: starts [5, 0] and ends [6, 6] are out of range for shape [4, 6]

// -----

func.func @slice_step(%x: tensor<4x6xf32>) {
  %0 = "ane.slice"(%x) <{starts = array<i64: 0, 0>, ends = array<i64: 4, 6>, steps = array<i64: 0, 1>}> : (tensor<4x6xf32>) -> tensor<4x6xf32>
  func.return
}
// CHECK: ane.slice: steps must be >= 1

// -----

func.func @slice_count(%x: tensor<4x6xf32>) {
  %0 = "ane.slice"(%x) <{starts = array<i64: 0>, ends = array<i64: 4>, steps = array<i64: 1>}> : (tensor<4x6xf32>) -> tensor<4x6xf32>
  func.return
}
// CHECK: ane.slice: starts/ends/steps need 2 values each

// -----

func.func @pad_negative(%x: tensor<4x6xf32>) {
  %0 = "ane.pad"(%x) <{pads = array<i64: 0, -1, 0, 0>}> : (tensor<4x6xf32>) -> tensor<4x5xf32>
  func.return
}
// CHECK: ane.pad: pads must be >= 0 (use ane.slice to crop)

// -----

func.func @pad_mode(%x: tensor<4x6xf32>) {
  %0 = "ane.pad"(%x) <{pads = array<i64: 0, 1, 0, 1>, mode = "wrap"}> : (tensor<4x6xf32>) -> tensor<4x8xf32>
  func.return
}
// CHECK: ane.pad: mode must be one of ('constant', 'reflect', 'edge')

// -----

func.func @pad_reflect(%x: tensor<4x6xf32>) {
  %0 = "ane.pad"(%x) <{pads = array<i64: 0, 6, 0, 0>, mode = "reflect"}> : (tensor<4x6xf32>) -> tensor<4x12xf32>
  func.return
}
// CHECK: ane.pad: reflect pads must be smaller than the axis

// -----

func.func @pad_count(%x: tensor<4x6xf32>) {
  %0 = "ane.pad"(%x) <{pads = array<i64: 1, 1>}> : (tensor<4x6xf32>) -> tensor<6x6xf32>
  func.return
}
// CHECK: ane.pad: pads needs 4 values

// -----

func.func @tile_repeats(%x: tensor<4x6xf32>) {
  %0 = "ane.tile"(%x) <{repeats = array<i64: 2>}> : (tensor<4x6xf32>) -> tensor<8x6xf32>
  func.return
}
// CHECK: ane.tile: repeats needs 2 values >= 1

// -----

func.func @tile_result(%x: tensor<4x6xf32>) {
  %0 = "ane.tile"(%x) <{repeats = array<i64: 2, 1>}> : (tensor<4x6xf32>) -> tensor<4x12xf32>
  func.return
}
// CHECK: ane.tile: result shape [4, 12] does not match the expected [8, 6]

// -----

func.func @broadcast_incompatible(%x: tensor<4x6xf32>) {
  %0 = "ane.broadcast"(%x) : (tensor<4x6xf32>) -> tensor<4x12xf32>
  func.return
}
// CHECK: ane.broadcast: [4, 6] does not broadcast to [4, 12]

// -----

func.func @resize_mode(%x: tensor<1x1x4x4xf32>) {
  %0 = "ane.resize"(%x) <{mode = "cubic", scales = array<f32: 2.0, 2.0>}> : (tensor<1x1x4x4xf32>) -> tensor<1x1x8x8xf32>
  func.return
}
// CHECK: ane.resize: mode must be one of ('nearest', 'bilinear')

// -----

func.func @resize_coordinate_mode(%x: tensor<1x1x4x4xf32>) {
  %0 = "ane.resize"(%x) <{mode = "nearest", scales = array<f32: 2.0, 2.0>, coordinate_mode = "tf_crop_and_resize"}> : (tensor<1x1x4x4xf32>) -> tensor<1x1x8x8xf32>
  func.return
}
// CHECK: ane.resize: coordinate_mode must be one of ('half_pixel', 'pytorch_half_pixel', 'align_corners', 'asymmetric')

// -----

func.func @resize_nearest_mode(%x: tensor<1x1x4x4xf32>) {
  %0 = "ane.resize"(%x) <{mode = "nearest", scales = array<f32: 2.0, 2.0>, nearest_mode = "round"}> : (tensor<1x1x4x4xf32>) -> tensor<1x1x8x8xf32>
  func.return
}
// CHECK: ane.resize: nearest_mode must be one of ('round_prefer_floor', 'round_prefer_ceil', 'floor', 'ceil')

// -----

func.func @resize_channels(%x: tensor<1x1x4x4xf32>) {
  %0 = "ane.resize"(%x) <{mode = "nearest", scales = array<f32: 2.0, 2.0>}> : (tensor<1x1x4x4xf32>) -> tensor<1x2x8x8xf32>
  func.return
}
// CHECK: ane.resize changes only the spatial axes

// -----

func.func @resize_scales(%x: tensor<1x1x4x4xf32>) {
  %0 = "ane.resize"(%x) <{mode = "nearest", scales = array<f32: 1.0, 2.0, 2.0>}> : (tensor<1x1x4x4xf32>) -> tensor<1x1x8x8xf32>
  func.return
}
// CHECK: ane.resize: one or two spatial scales over an input of higher rank

// -----

func.func @resize_zero_scale(%x: tensor<1x1x4x4xf32>) {
  %0 = "ane.resize"(%x) <{mode = "bilinear", scales = array<f32: 0.0, 2.0>}> : (tensor<1x1x4x4xf32>) -> tensor<1x1x4x8xf32>
  func.return
}
// CHECK: ane.resize: scales must be > 0

// -----

func.func @depth_to_space_channels(%x: tensor<1x6x2x2xf32>) {
  %0 = "ane.depth_to_space"(%x) <{block_size = 2 : i64}> : (tensor<1x6x2x2xf32>) -> tensor<1x1x4x4xf32>
  func.return
}
// CHECK: ane.depth_to_space: needs NCHW with C divisible by 4

// -----

func.func @depth_to_space_mode(%x: tensor<1x8x2x2xf32>) {
  %0 = "ane.depth_to_space"(%x) <{block_size = 2 : i64, mode = "RCD"}> : (tensor<1x8x2x2xf32>) -> tensor<1x2x4x4xf32>
  func.return
}
// CHECK: ane.depth_to_space: mode must be DCR or CRD

// -----

func.func @space_to_depth_size(%x: tensor<1x2x5x4xf32>) {
  %0 = "ane.space_to_depth"(%x) <{block_size = 2 : i64}> : (tensor<1x2x5x4xf32>) -> tensor<1x8x2x2xf32>
  func.return
}
// CHECK: ane.space_to_depth: needs NCHW with H and W divisible by 2

// -----

func.func @cast_shape(%x: tensor<2x3xf32>) {
  %0 = "ane.cast"(%x) : (tensor<2x3xf32>) -> tensor<3x2xf16>
  func.return
}
// CHECK: ane.cast: result shape [3, 2] does not match the expected [2, 3]

// -----

func.func @concat_off_axis(%a: tensor<2x3xf32>, %b: tensor<3x3xf32>) {
  %0 = "ane.concat"(%a, %b) <{axis = 1 : i64}> : (tensor<2x3xf32>, tensor<3x3xf32>) -> tensor<2x6xf32>
  func.return
}
// CHECK: ane.concat: [3, 3] and [2, 3] differ off axis 1

// -----

func.func @concat_result(%a: tensor<2x3xf32>) {
  %0 = "ane.concat"(%a, %a) <{axis = 0 : i64}> : (tensor<2x3xf32>, tensor<2x3xf32>) -> tensor<2x3xf32>
  func.return
}
// CHECK: ane.concat: result shape [2, 3] does not match the expected [4, 3]

// -----

func.func @concat_empty() {
  %0 = "ane.concat"() <{axis = 0 : i64}> : () -> tensor<2x3xf32>
  func.return
}
// CHECK: ane.concat needs at least one input

// -----

func.func @split_sizes(%x: tensor<2x6xf32>) {
  %0, %1 = "ane.split"(%x) <{axis = 1 : i64}> : (tensor<2x6xf32>) -> (tensor<2x2xf32>, tensor<2x3xf32>)
  func.return
}
// CHECK: ane.split: pieces [2, 3] do not add up to 6

// -----

func.func @split_off_axis(%x: tensor<2x6xf32>) {
  %0, %1 = "ane.split"(%x) <{axis = 1 : i64}> : (tensor<2x6xf32>) -> (tensor<2x3xf32>, tensor<1x3xf32>)
  func.return
}
// CHECK: ane.split: piece [1, 3] differs from [2, 6] off axis 1

// -----

func.func @segment_block_args(%x: tensor<2xf32>) {
  %0 = "ane.segment"(%x) ({
  ^bb0(%a: tensor<2xf16>):
    "ane.yield"(%a) : (tensor<2xf16>) -> ()
  }) : (tensor<2xf32>) -> tensor<2xf16>
  func.return
}
// CHECK: ane.segment: block argument types ['tensor<2xf16>'] differ from the operand types ['tensor<2xf32>']

// -----

func.func @segment_without_yield(%x: tensor<2xf32>) {
  %0 = "ane.segment"(%x) ({
  ^bb0(%a: tensor<2xf32>):
    %r = "ane.relu"(%a) : (tensor<2xf32>) -> tensor<2xf32>
  }) : (tensor<2xf32>) -> tensor<2xf32>
  func.return
}
// CHECK: Operation ane.relu terminates block in single-block region but is not a terminator

// -----

func.func @segment_yield_types(%x: tensor<2xf32>) {
  %0 = "ane.segment"(%x) ({
  ^bb0(%a: tensor<2xf32>):
    "ane.yield"(%a) : (tensor<2xf32>) -> ()
  }) : (tensor<2xf32>) -> tensor<2xf16>
  func.return
}
// CHECK: ane.segment: yielded types ['tensor<2xf32>'] differ from the result types ['tensor<2xf16>']

// -----

func.func @segment_not_isolated(%x: tensor<2xf32>) {
  %0 = "ane.segment"() ({
    "ane.yield"(%x) : (tensor<2xf32>) -> ()
  }) : () -> tensor<2xf32>
  func.return
}
// CHECK: Operation using value defined out of its IsolatedFromAbove parent: YieldOp(ane.yield %x : tensor<2xf32>)

// -----

func.func @yield_outside_segment(%x: tensor<2xf32>) {
  "ane.yield"(%x) : (tensor<2xf32>) -> ()
}
// CHECK: 'ane.yield' expects parent op 'ane.segment'

// -----

func.func @host_name(%x: tensor<2xf32>) {
  %0 = "host.op"(%x) <{op_name = "TopK"}> : (tensor<2xf32>) -> tensor<2xf32>
  func.return
}
// CHECK: host.op name 'TopK' must be <source>.<op>, e.g. onnx.TopK

// -----

func.func @host_no_name(%x: tensor<2xf32>) {
  %0 = "host.op"(%x) : (tensor<2xf32>) -> tensor<2xf32>
  func.return
}
// CHECK: property 'op_name' expected in operation 'host.op'

// -----

func.func @host_scalar(%x: f32) {
  %0 = "host.op"(%x) <{op_name = "onnx.Abs"}> : (f32) -> f32
  func.return
}
// CHECK: operand 'args' at position 0 does not verify:
// CHECK-NEXT: f32 should be of base attribute tensor

// -----

func.func @host_version(%x: tensor<2xf32>) {
  %0 = "host.op"(%x) <{op_name = "onnx.Abs", version = 1.5 : f32}> : (tensor<2xf32>) -> tensor<2xf32>
  func.return
}
// CHECK: 1.500000e+00 : f32 should be of base attribute integer

// -----

func.func @host_custom(%x: tensor<2xf32>) {
  %0 = host.op "Abs"(%x) : (tensor<2xf32>) -> tensor<2xf32>
  func.return
}
// CHECK: host.op name 'Abs' must be <source>.<op>, e.g. onnx.TopK

// -----

func.func @host_empty_op(%x: tensor<2xf32>) {
  %0 = host.op "onnx."(%x) : (tensor<2xf32>) -> tensor<2xf32>
  func.return
}
// CHECK: host.op name 'onnx.' must be <source>.<op>, e.g. onnx.TopK
