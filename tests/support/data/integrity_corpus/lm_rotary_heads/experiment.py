n_layer = 6
n_embd = 384
block_size = 256
batch_size = 64
learning_rate = 6e-4
max_iters = 5000
dropout = 0.2
vocab_size = 50257
