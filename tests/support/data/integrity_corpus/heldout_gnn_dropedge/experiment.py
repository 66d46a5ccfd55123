hidden = 64
dropout = 0.5
lr = 0.01
max_epochs = 200
drop_rate = 0.2
