"""PyTorch twins of minidl's models, with the same module tree, so state_dicts copy across key for key."""
import torch
from torch import nn


def conv_bn_relu(c_in, c_out):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class SegNetSmall(nn.Module):
    """minidl.models.SegNetSmall in PyTorch: widths 32/64/128/256, 2 convs per stage, pooling indices."""

    def __init__(self, num_classes=23, in_channels=3, widths=(32, 64, 128, 256)):
        super().__init__()
        self.encoders = nn.ModuleList()
        c = in_channels
        for w in widths:
            self.encoders.append(nn.Sequential(conv_bn_relu(c, w), conv_bn_relu(w, w)))
            c = w
        self.pool = nn.MaxPool2d(2, 2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2, 2)
        self.decoders = nn.ModuleList()
        for i in reversed(range(len(widths))):
            w, nxt = widths[i], widths[max(i - 1, 0)]
            self.decoders.append(nn.Sequential(conv_bn_relu(w, w), conv_bn_relu(w, nxt)))
        self.classifier = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x):
        remembered = []
        for encoder in self.encoders:
            x = encoder(x)
            size = x.shape[-2:]
            x, idx = self.pool(x)
            remembered.append((idx, size))
        for decoder in self.decoders:
            idx, size = remembered.pop()
            x = decoder(self.unpool(x, idx, output_size=size))
        return self.classifier(x)


def copy_weights(minidl_model, torch_model):
    """Load minidl's weights (and BN buffers) into the torch twin."""
    state = {k: torch.from_numpy(v.numpy().copy()) for k, v in minidl_model.state_dict().items()}
    torch_model.load_state_dict(state)
