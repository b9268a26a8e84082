// SPDX-License-Identifier: GPL-2.0
/*
 * gpio-level-irq: a kernel consumer of one level-triggered GPIO interrupt,
 * for the vhost-device-gpio end-to-end test. No userspace GPIO interface asks
 * for level interrupts (the character device's edge events are edges), so
 * the guest loads this to exercise VIRTIO_GPIO_IRQ_TYPE_LEVEL_HIGH/LOW through
 * the gpio-virtio driver.
 *
 *   echo "virtio1 0 high" > /sys/module/gpio_level_irq/parameters/attach
 *   cat /sys/module/gpio_level_irq/parameters/count   # interrupts handled
 *   echo "" > /sys/module/gpio_level_irq/parameters/attach   # release
 *
 * The handler only counts: the line stays asserted until the outside world
 * releases it, so the interrupt fires again each time it is unmasked.
 */
#include <linux/err.h>
#include <linux/gpio/consumer.h>
#include <linux/gpio/driver.h>
#include <linux/gpio/machine.h>
#include <linux/interrupt.h>
#include <linux/module.h>
#include <linux/mutex.h>

static unsigned int count;
module_param(count, uint, 0444);
MODULE_PARM_DESC(count, "interrupts handled since the last attach");

static DEFINE_MUTEX(lock);
static struct gpio_desc *desc;
static int irq = -1;

static irqreturn_t level_irq_thread(int irq, void *data)
{
	WRITE_ONCE(count, READ_ONCE(count) + 1);
	return IRQ_HANDLED;
}

static void detach(void)
{
	if (irq >= 0)
		free_irq(irq, NULL);
	irq = -1;
	if (desc)
		gpiochip_free_own_desc(desc);
	desc = NULL;
}

/* "<chip label> <offset> high|low", or an empty string to detach. */
static int attach_set(const char *value, const struct kernel_param *kp)
{
	char label[64], level[8];
	unsigned int offset;
	struct gpio_device *gdev;
	unsigned long flags;
	int ret = 0;

	mutex_lock(&lock);
	detach();
	if (sscanf(value, "%63s %u %7s", label, &offset, level) != 3)
		goto out;
	if (!strcmp(level, "high")) {
		flags = IRQF_TRIGGER_HIGH;
	} else if (!strcmp(level, "low")) {
		flags = IRQF_TRIGGER_LOW;
	} else {
		ret = -EINVAL;
		goto out;
	}
	gdev = gpio_device_find_by_label(label);
	if (!gdev) {
		ret = -ENODEV;
		goto out;
	}
	desc = gpiochip_request_own_desc(gpio_device_get_chip(gdev), offset,
					 "gpio-level-irq", GPIO_ACTIVE_HIGH,
					 GPIOD_IN);
	gpio_device_put(gdev);
	if (IS_ERR(desc)) {
		ret = PTR_ERR(desc);
		desc = NULL;
		goto out;
	}
	ret = gpiod_to_irq(desc);
	if (ret < 0) {
		detach();
		goto out;
	}
	WRITE_ONCE(count, 0);
	/* Threaded and ONESHOT: the line stays masked until the thread ran. */
	ret = request_threaded_irq(ret, NULL, level_irq_thread,
				   flags | IRQF_ONESHOT, "gpio-level-irq", NULL);
	if (ret) {
		detach();
		goto out;
	}
	irq = gpiod_to_irq(desc);
out:
	mutex_unlock(&lock);
	return ret;
}

static const struct kernel_param_ops attach_ops = {
	.set = attach_set,
};
module_param_cb(attach, &attach_ops, NULL, 0200);
MODULE_PARM_DESC(attach, "\"<chip label> <offset> high|low\" to attach, \"\" to detach");

static void __exit level_irq_exit(void)
{
	mutex_lock(&lock);
	detach();
	mutex_unlock(&lock);
}
module_exit(level_irq_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("A level-triggered GPIO interrupt consumer for vhost-device-gpio's tests");
