"""The seeds' torchsummary tables (shared/seeds/*.md), copied as the specification."""

import re

# layer type, output shape, parameters
SEED_TABLES = {
    "mnist_s4": """
Conv2d [16,28,28] 144; ReLU [16,28,28] 0; BatchNorm2d [16,28,28] 32; Conv2d [16,28,28] 2304;
ReLU [16,28,28] 0; BatchNorm2d [16,28,28] 32; Conv2d [64,28,28] 9216; ReLU [64,28,28] 0;
BatchNorm2d [64,28,28] 128; MaxPool2d [64,14,14] 0; Conv2d [8,14,14] 512; ReLU [8,14,14] 0;
Conv2d [16,12,12] 1152; ReLU [16,12,12] 0; BatchNorm2d [16,12,12] 32; Dropout2d [16,12,12] 0;
Conv2d [16,10,10] 2304; ReLU [16,10,10] 0; BatchNorm2d [16,10,10] 32; Conv2d [16,10,10] 256;
ReLU [16,10,10] 0; Conv2d [16,8,8] 2304; ReLU [16,8,8] 0; BatchNorm2d [16,8,8] 32;
AvgPool2d [16,1,1] 0; Linear [10] 170""",
    "mnist_s5": """
Conv2d [16,28,28] 160; ReLU [16,28,28] 0; BatchNorm2d [16,28,28] 32; Conv2d [16,26,26] 2320;
ReLU [16,26,26] 0; BatchNorm2d [16,26,26] 32; MaxPool2d [16,13,13] 0; Dropout [16,13,13] 0;
Conv2d [16,13,13] 2320; ReLU [16,13,13] 0; BatchNorm2d [16,13,13] 32; Conv2d [32,13,13] 4640;
ReLU [32,13,13] 0; BatchNorm2d [32,13,13] 64; Conv2d [16,7,7] 4624; ReLU [16,7,7] 0;
BatchNorm2d [16,7,7] 32; MaxPool2d [16,3,3] 0; Dropout [16,3,3] 0; Conv2d [32,3,3] 4640;
ReLU [32,3,3] 0; BatchNorm2d [32,3,3] 64; MaxPool2d [32,1,1] 0; Dropout [32,1,1] 0;
Linear [10] 330""",
    "mnist_26k": """
Conv2d [8,26,26] 80; ReLU [8,26,26] 0; BatchNorm2d [8,26,26] 16; Dropout [8,26,26] 0;
Conv2d [16,24,24] 1168; ReLU [16,24,24] 0; BatchNorm2d [16,24,24] 32; Dropout [16,24,24] 0;
Conv2d [32,22,22] 4640; ReLU [32,22,22] 0; BatchNorm2d [32,22,22] 64; Dropout [32,22,22] 0;
Conv2d [8,22,22] 264; ReLU [8,22,22] 0; BatchNorm2d [8,22,22] 16; Dropout [8,22,22] 0;
Conv2d [16,20,20] 1168; ReLU [16,20,20] 0; BatchNorm2d [16,20,20] 32; Dropout [16,20,20] 0;
Conv2d [32,18,18] 4640; ReLU [32,18,18] 0; BatchNorm2d [32,18,18] 64; Dropout [32,18,18] 0;
MaxPool2d [32,9,9] 0; Conv2d [8,9,9] 264; ReLU [8,9,9] 0; BatchNorm2d [8,9,9] 16;
Dropout [8,9,9] 0; Conv2d [16,7,7] 1168; ReLU [16,7,7] 0; BatchNorm2d [16,7,7] 32;
Dropout [16,7,7] 0; Conv2d [32,5,5] 4640; Linear [10] 8010""",
}
SEED_TOTALS = {"mnist_s4": 18650, "mnist_s5": 19290, "mnist_26k": 26314}


def parse(table):
    """[(type, shape without batch, params), ...]"""
    rows = []
    for entry in table.replace("\n", " ").split(";"):
        kind, shape, params = re.match(r"\s*(\w+) \[([\d,]+)\] (\d+)", entry).groups()
        rows.append((kind, tuple(int(s) for s in shape.split(",")), int(params)))
    return rows

