total_episodes = 3000
gamma = 0.99
batch_size = 64
lr = 3e-4
bonus_scale = 0.1
seeds = [0, 1, 2]
