"""The shipped models, installed with gdsl as the package data of `gdsl.models`, so that a
model can be used by name from anywhere: `gdsl.load("rbm")`, `gdsl compile rbm`."""
