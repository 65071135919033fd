# CPU demo schedule: AdamW, short warmup, cosine decay; 4 epochs of 125 steps (batch 16) so that the three
# demo runs and their tests fit `make demo` into 15 minutes on 2 cores.
optimizer = dict(type="AdamW", lr=2e-3, weight_decay=0.05)
param_scheduler = dict(
    warmup=dict(type="LinearLR", start_factor=0.05, total_iters=30),  # iterations
    main=dict(type="CosineAnnealingLR", eta_min=2e-5),
)
train_cfg = dict(max_epochs=4, val_interval=1)
