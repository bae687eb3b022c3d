// A block with arithmetic that does nothing: a unit scale, a zero bias, a unit divisor.
// The scale that broadcasts %x up to a larger shape is not an identity and stays.
func.func @block(%x: tensor<1x8x1x16xf16>) -> (tensor<1x8x1x16xf16>, tensor<2x8x1x16xf16>) {
  %one = ane.const dense<1.0> : tensor<1x1x1x1xf16>
  %zero = ane.const dense<0.0> : tensor<1x8x1x1xf16>
  %half = ane.const dense<0.5> : tensor<1x1x1x1xf16>
  %ones = ane.const dense<1.0> : tensor<2x8x1x16xf16>
  %scaled = ane.mul %x, %one {ane.name = "scale"} : (tensor<1x8x1x16xf16>, tensor<1x1x1x1xf16>) -> tensor<1x8x1x16xf16>
  %biased = ane.add %scaled, %zero {ane.name = "bias"} : (tensor<1x8x1x16xf16>, tensor<1x8x1x1xf16>) -> tensor<1x8x1x16xf16>
  %act = ane.relu %biased {ane.name = "act"} : tensor<1x8x1x16xf16>
  %out = ane.div %act, %one {ane.name = "norm"} : (tensor<1x8x1x16xf16>, tensor<1x1x1x1xf16>) -> tensor<1x8x1x16xf16>
  %halved = ane.mul %out, %half {ane.name = "halve"} : (tensor<1x8x1x16xf16>, tensor<1x1x1x1xf16>) -> tensor<1x8x1x16xf16>
  %wide = ane.mul %x, %ones {ane.name = "broadcast"} : (tensor<1x8x1x16xf16>, tensor<2x8x1x16xf16>) -> tensor<2x8x1x16xf16>
  func.return %halved, %wide : tensor<1x8x1x16xf16>, tensor<2x8x1x16xf16>
}
