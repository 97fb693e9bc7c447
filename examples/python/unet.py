"""U-Net-16 in Python from kiln.nn modules: the same tree as examples/models/unet.c
(and the PyTorch class of tests/fixtures/gen_unet.py), so the state_dict names,
their order and the parameter count (483,441 for 3 -> 1) are the C model's."""
import kiln
from kiln import nn


def block(in_channels, out_channels, dtype=None):
    """Conv3x3 - BN - ReLU, twice."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, dtype=dtype),
                         nn.BatchNorm2d(out_channels, dtype=dtype), nn.ReLU(),
                         nn.Conv2d(out_channels, out_channels, 3, padding=1, dtype=dtype),
                         nn.BatchNorm2d(out_channels, dtype=dtype), nn.ReLU())


class UNet(nn.Module):
    """(N, in, H, W) -> logits (N, out, H, W); H and W multiples of 8. Children are
    registered in the C model's order: enc1..3, pool, bottleneck, up3, dec3, up2, dec2,
    up1, dec1, head."""

    def __init__(self, in_channels=3, out_channels=1, base_width=16, dtype=None):
        super().__init__()
        b = base_width
        self.enc1 = block(in_channels, b, dtype)
        self.enc2 = block(b, 2 * b, dtype)
        self.enc3 = block(2 * b, 4 * b, dtype)
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = block(4 * b, 8 * b, dtype)
        self.up3 = nn.ConvTranspose2d(8 * b, 4 * b, 2, stride=2, dtype=dtype)
        self.dec3 = block(8 * b, 4 * b, dtype)
        self.up2 = nn.ConvTranspose2d(4 * b, 2 * b, 2, stride=2, dtype=dtype)
        self.dec2 = block(4 * b, 2 * b, dtype)
        self.up1 = nn.ConvTranspose2d(2 * b, b, 2, stride=2, dtype=dtype)
        self.dec1 = block(2 * b, b, dtype)
        self.head = nn.Conv2d(b, out_channels, 1, dtype=dtype)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        e3 = self.enc3(self.pool(e2))
        h = self.bottleneck(self.pool(e3))
        h = self.dec3(kiln.cat([self.up3(h), e3], axis=1))
        h = self.dec2(kiln.cat([self.up2(h), e2], axis=1))
        h = self.dec1(kiln.cat([self.up1(h), e1], axis=1))
        return self.head(h)
