# AdamW, linear warmup then cosine decay, stepped every iteration; 24 epochs.
optimizer = dict(type="AdamW", lr=1e-3, weight_decay=0.05)  # any torch.optim class by name
param_scheduler = dict(
    warmup=dict(type="LinearLR", start_factor=0.01, total_iters=500),  # iterations of warmup
    main=dict(type="CosineAnnealingLR", eta_min=1e-5),  # T_max defaults to the iterations after warmup
)
train_cfg = dict(max_epochs=24, val_interval=1)  # epochs; evaluate every val_interval epochs
