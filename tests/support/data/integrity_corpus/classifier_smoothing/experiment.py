epochs = 20
batch_size = 128
lr = 0.01
momentum = 0.9
weight_decay = 5e-4
label_smoothing = 0.1
num_classes = 10
