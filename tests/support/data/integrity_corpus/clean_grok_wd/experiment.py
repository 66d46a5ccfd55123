import argparse
p = 97
num_steps = 7500
batch_size = 512
lr = 1e-3
weight_decay = 0.5
wd_strong = 1.0
warmup_steps = 50
d_model = 128
num_heads = 4
num_layers = 2
threshold = 0.99
seeds = [0, 1, 2]
train_fraction = 0.5
