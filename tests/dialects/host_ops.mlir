// RUN: anec opt %s | filecheck %s
// RUN: anec opt %s --print-op-generic | anec opt | filecheck %s

func.func @topk(%x: tensor<3x4xf32>, %k: tensor<1xi64>) -> (tensor<3x2xf32>, tensor<3x2xi64>) {
  %v, %i = host.op "onnx.TopK"(%x, %k) {attrs = {axis = 1 : i64, largest = 1 : i64}, version = 11 : i64} : (tensor<3x4xf32>, tensor<1xi64>) -> (tensor<3x2xf32>, tensor<3x2xi64>)
  func.return %v, %i : tensor<3x2xf32>, tensor<3x2xi64>
}
// CHECK:      %{{.*}}, %{{.*}} = host.op "onnx.TopK"(%x, %k) {attrs = {axis = 1 : i64, largest = 1 : i64}, version = 11 : i64} : (tensor<3x4xf32>, tensor<1xi64>) -> (tensor<3x2xf32>, tensor<3x2xi64>)
