"""The gradient-quadrature engine and the methods written over it."""
