# The demo teacher (configs/demo/teacher.py) with a fifth task, object counting, from examples/counting/counting.py.
#   python tools/train.py examples/counting/teacher.py --work-dir work_dirs/counting/teacher
_base_ = "../../configs/demo/teacher.py"
custom_imports = dict(imports=["examples.counting.counting"], allow_failed_imports=False)  # registers the parts

model = dict(heads=dict(count=dict(type="CountHead", hidden=64)))   # num_classes: one per category, from the data
_count_target = dict(targets=dict(count=dict(type="ObjectCountTarget")))  # a private helper (_): not a config key
train_dataloader = dict(dataset=_count_target)
val_dataloader = dict(dataset=_count_target)
test_dataloader = dict(dataset=_count_target)
metrics = dict(count=dict(type="CountMetric"))   # count/acc picks best.pth with the other tasks' primaries
drawers = dict(count=dict(type="CountDrawer"))
