"""What differs by task: loss functions and evaluation (classification accuracy, COCO box mAP), and the weights a
schedule-free optimizer evaluates."""
