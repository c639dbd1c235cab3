"""An op whose backward is broken on purpose, for the tests of the engine's and gradcheck's error messages."""
import minidl


def op_whose_backward_returns(make_grad):
    """``Broken.apply``: y = 2 x, whose backward returns ``make_grad(grad)`` (the right one: ``grad * 2``).

    Its graph node is named ``BrokenBackward``.
    """

    class Broken(minidl.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, grad):
            return make_grad(grad)

    return Broken.apply
